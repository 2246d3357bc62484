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
        rules.snapshot.output.summary,
        deps("sweep"),
    output:
        touch(WORKER_DONE),
    params:
        config=section_param("sweep"),
        paths=paths_overrides(WORKER_DONE),
    log:
        log_file("sweep-worker-{worker}"),
    wildcard_constraints:
        worker=r"\d+",
    resources:
        gpu=0,  # GPUs of the job (the SLURM plugin's name): workflow/profiles/slurm sets it
    shell:
        "dlforge sweep experiment={wildcards.exp} hpo.n_workers=1"
        " hydra.job.name=sweep-worker-{wildcards.worker}{params.paths} > {log} 2>&1"


rule sweep:
    input:
        rules.snapshot.output.summary,
        deps("sweep"),
        sweep_workers_done,
    output:
        **outputs("sweep"),
    params:
        config=section_param("sweep"),
        paths=paths_overrides(first_output("sweep")),
    log:
        log_file("sweep"),
    threads: lambda wildcards: graph.sweep_workers(wildcards.exp)
    resources:
        gpu=0,  # GPUs of the job (the SLURM plugin's name): workflow/profiles/slurm sets it
    shell:
        "dlforge sweep experiment={wildcards.exp}{params.paths} > {log} 2>&1"
