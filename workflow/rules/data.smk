# Dataset manager stages: commit the experiment's sources, then snapshot them.


rule ingest:
    input:
        deps("ingest"),
    output:
        summary=f"{EXP_DIR}/ingest.json",
        # Created here, raised by `dlforge monitor` on drift: training reads it.
        retrain=f"{EXP_DIR}/retrain.json",
    params:
        # A commit added outside the workflow changes this and re-runs the stage.
        external_commits=lambda wildcards: graph.external_commits(wildcards.exp),
    log:
        f"{EXP_DIR}/logs/ingest/ingest.log",
    shell:
        "dlforge ingest experiment={wildcards.exp} > /dev/null"


rule snapshot:
    input:
        rules.ingest.output.summary,
        deps("snapshot"),
    output:
        f"{EXP_DIR}/snapshot.json",
    log:
        f"{EXP_DIR}/logs/snapshot/snapshot.log",
    shell:
        "dlforge snapshot experiment={wildcards.exp} > /dev/null"
