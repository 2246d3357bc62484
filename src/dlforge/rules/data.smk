# Dataset manager stages: commit the experiment's sources, then snapshot them.


rule ingest:
    input:
        deps("ingest"),
    output:
        # summary, and retrain: created here, raised by `dlforge monitor` on drift,
        # read by training.
        **outputs("ingest"),
    params:
        config=section_param("ingest"),
        # A commit added outside the workflow changes this and re-runs the stage.
        external_commits=lambda wildcards: graph.external_commits(wildcards.exp),
        paths=paths_overrides(first_output("ingest")),
    log:
        log_file("ingest"),
    shell:
        "dlforge ingest experiment={wildcards.exp}{params.paths} > {log} 2>&1"


rule snapshot:
    input:
        rules.ingest.output.summary,
        deps("snapshot"),
    output:
        **outputs("snapshot"),
    params:
        config=section_param("snapshot"),
        paths=paths_overrides(first_output("snapshot")),
    log:
        log_file("snapshot"),
    shell:
        "dlforge snapshot experiment={wildcards.exp}{params.paths} > {log} 2>&1"
