# Training: Lightning on the experiment's snapshot, one MLflow run per training.
# Checkpoints under train/checkpoints are not outputs: an interrupted run
# resumes from them when the rule runs again.


rule train:
    input:
        rules.snapshot.output.summary,
        deps("train"),
    output:
        **outputs("train"),
    params:
        config=section_param("train"),
        paths=paths_overrides(first_output("train")),
    log:
        log_file("train"),
    resources:
        gpu=0,  # GPUs of the job (the SLURM plugin's name): workflow/profiles/slurm sets it
    shell:
        "dlforge train experiment={wildcards.exp}{params.paths} > {log} 2>&1"
