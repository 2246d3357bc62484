# Hyperparameter sweep: an Optuna study over the training config, for the
# experiments that enable it (hpo.enabled). The study journal and the trial
# folders under sweep/ are not outputs: a re-run continues the same study.


rule sweep:
    input:
        rules.snapshot.output,
        deps("sweep"),
    output:
        best=f"{EXP_DIR}/sweep/best.yaml",
        summary=f"{EXP_DIR}/sweep/summary.json",
        history=f"{EXP_DIR}/sweep/history.png",
        importances=f"{EXP_DIR}/sweep/importances.png",
    log:
        f"{EXP_DIR}/logs/sweep/sweep.log",
    threads: lambda wildcards: graph.sweep_workers(wildcards.exp)
    resources:
        gpus=0,  # set by the cluster profile
    shell:
        "dlforge sweep experiment={wildcards.exp} > /dev/null"
