# Hyperparameter sweep: an Optuna study over the training config, for the
# experiments that enable it (hpo.enabled). The study journal and the trial
# folders under sweep/ are not outputs: a re-run continues the same study.
#
# With `sweep_jobs: K` > 1 (workflow config; the SLURM profile sets it), K
# `sweep_worker` jobs run trials first, each one `dlforge sweep` process with
# one worker, all on the experiment's study (hpo.storage: an RDB URL when the
# jobs run on several machines); the `sweep` rule then finds the study done and
# only writes best.yaml, the summary and the plots. With 1, `sweep` does it all.


rule sweep_worker:
    input:
        rules.snapshot.output,
        deps("sweep"),
    output:
        touch(f"{EXP_DIR}/sweep/workers/{{worker}}.done"),
    log:
        # Hydra's log of the job: logs/<hydra.job.name>/<hydra.job.name>.log
        f"{EXP_DIR}/logs/sweep-worker-{{worker}}/sweep-worker-{{worker}}.log",
    wildcard_constraints:
        worker=r"\d+",
    resources:
        gpu=0,  # GPUs of the job (the SLURM plugin's name): workflow/profiles/slurm sets it
    shell:
        "dlforge sweep experiment={wildcards.exp} hpo.n_workers=1"
        " hydra.job.name=sweep-worker-{wildcards.worker} > /dev/null"


rule sweep:
    input:
        rules.snapshot.output,
        deps("sweep"),
        sweep_workers_done,
    output:
        best=f"{EXP_DIR}/sweep/best.yaml",
        summary=report(
            f"{EXP_DIR}/sweep/summary.json",
            caption="../report/sweep_summary.rst",
            category="{exp}",
            subcategory="sweep",
        ),
        history=report(
            f"{EXP_DIR}/sweep/history.png",
            caption="../report/history.rst",
            category="{exp}",
            subcategory="sweep",
        ),
        importances=report(
            f"{EXP_DIR}/sweep/importances.png",
            caption="../report/importances.rst",
            category="{exp}",
            subcategory="sweep",
        ),
    log:
        f"{EXP_DIR}/logs/sweep/sweep.log",
    threads: lambda wildcards: graph.sweep_workers(wildcards.exp)
    resources:
        gpu=0,  # GPUs of the job (the SLURM plugin's name): workflow/profiles/slurm sets it
    shell:
        "dlforge sweep experiment={wildcards.exp} > /dev/null"
