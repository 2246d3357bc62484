# Shared by all rules: the validated workflow config and the stage graph.
from snakemake.utils import validate

from dlforge.stages import workflow as graph

validate(config, "../schemas/config.schema.yaml")

EXP_DIR = graph.exp_dir_pattern()  # e.g. outputs/{exp}, from conf/paths


def deps(stage_name):
    """Input function: the files (and parameter files) the stage reads, from dlforge.stages.workflow."""

    def files(wildcards):
        stage = graph.stage(wildcards.exp, stage_name)
        return [*stage.deps, *stage.params]

    return files


def sweep_workers_done(wildcards):
    """Input function of the sweep rule: its workers' markers (none with sweep_jobs 1)."""
    jobs = config["sweep_jobs"]
    if jobs == 1:
        return []
    return expand(rules.sweep_worker.output, exp=wildcards.exp, worker=range(jobs))


wildcard_constraints:
    exp="|".join(config["experiments"]),
