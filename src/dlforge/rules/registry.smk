# Evaluation on the snapshot's test split, then registration in the MLflow
# model registry (a new version, `candidate`; `champion` if it passes the gate).


rule evaluate:
    input:
        rules.train.output.model,
        deps("evaluate"),
    output:
        **outputs("evaluate"),
    params:
        config=section_param("evaluate"),
        paths=paths_overrides(first_output("evaluate")),
    log:
        log_file("evaluate"),
    shell:
        "dlforge evaluate experiment={wildcards.exp}{params.paths} > {log} 2>&1"


rule register:
    input:
        rules.evaluate.output.metrics,
        deps("register"),
    output:
        **outputs("register"),
    params:
        config=section_param("register"),
        paths=paths_overrides(first_output("register")),
    log:
        log_file("register"),
    shell:
        "dlforge register experiment={wildcards.exp}{params.paths} > {log} 2>&1"
