# Training: Lightning on the experiment's snapshot, one MLflow run per training.
# Checkpoints under train/checkpoints are not outputs: an interrupted run
# resumes from them when the rule runs again.


rule train:
    input:
        rules.snapshot.output,
        deps("train"),
    output:
        metrics=report(
            f"{EXP_DIR}/train/metrics.json",
            caption="../report/train_metrics.rst",
            category="{exp}",
            subcategory="training",
        ),
        history=f"{EXP_DIR}/train/history.csv",
        curves=report(
            f"{EXP_DIR}/train/curves.png",
            caption="../report/curves.rst",
            category="{exp}",
            subcategory="training",
        ),
        model=directory(f"{EXP_DIR}/train/model"),
    log:
        f"{EXP_DIR}/logs/train/train.log",
    resources:
        gpu=0,  # GPUs of the job (the SLURM plugin's name): workflow/profiles/slurm sets it
    shell:
        "dlforge train experiment={wildcards.exp} > /dev/null"
