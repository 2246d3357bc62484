# Training: Lightning on the experiment's snapshot, one MLflow run per training.
# Checkpoints under train/checkpoints are not outputs: an interrupted run
# resumes from them when the rule runs again.


rule train:
    input:
        rules.snapshot.output,
        deps("train"),
    output:
        metrics=f"{EXP_DIR}/train/metrics.json",
        history=f"{EXP_DIR}/train/history.csv",
        curves=f"{EXP_DIR}/train/curves.png",
        model=directory(f"{EXP_DIR}/train/model"),
    log:
        f"{EXP_DIR}/logs/train/train.log",
    resources:
        gpus=0,  # set by the cluster profile
    shell:
        "dlforge train experiment={wildcards.exp} > /dev/null"
