# Evaluation on the snapshot's test split, then registration in the MLflow
# model registry (a new version, `candidate`; `champion` if it passes the gate).


rule evaluate:
    input:
        rules.train.output.model,
        deps("evaluate"),
    output:
        metrics=report(
            f"{EXP_DIR}/eval/metrics.json",
            caption="../report/eval_metrics.rst",
            category="{exp}",
            subcategory="evaluation",
        ),
        per_class=report(
            f"{EXP_DIR}/eval/per_class.csv",
            caption="../report/per_class.rst",
            category="{exp}",
            subcategory="evaluation",
        ),
        confusion=f"{EXP_DIR}/eval/confusion.csv",
        plot=report(
            f"{EXP_DIR}/eval/confusion.png",
            caption="../report/confusion.rst",
            category="{exp}",
            subcategory="evaluation",
        ),
    log:
        f"{EXP_DIR}/logs/evaluate/evaluate.log",
    shell:
        "dlforge evaluate experiment={wildcards.exp} > /dev/null"


rule register:
    input:
        rules.evaluate.output.metrics,
        deps("register"),
    output:
        report(
            f"{EXP_DIR}/register.json",
            caption="../report/register.rst",
            category="{exp}",
            subcategory="registry",
        ),
    log:
        f"{EXP_DIR}/logs/register/register.log",
    shell:
        "dlforge register experiment={wildcards.exp} > /dev/null"
