# Evaluation on the snapshot's test split, then registration in the MLflow
# model registry (a new version, `candidate`; `champion` if it passes the gate).


rule evaluate:
    input:
        rules.train.output.model,
        deps("evaluate"),
    output:
        metrics=f"{EXP_DIR}/eval/metrics.json",
        per_class=f"{EXP_DIR}/eval/per_class.csv",
        confusion=f"{EXP_DIR}/eval/confusion.csv",
        plot=f"{EXP_DIR}/eval/confusion.png",
    log:
        f"{EXP_DIR}/logs/evaluate/evaluate.log",
    shell:
        "dlforge evaluate experiment={wildcards.exp} > /dev/null"


rule register:
    input:
        rules.evaluate.output.metrics,
        deps("register"),
    output:
        f"{EXP_DIR}/register.json",
    log:
        f"{EXP_DIR}/logs/register/register.log",
    shell:
        "dlforge register experiment={wildcards.exp} > /dev/null"
