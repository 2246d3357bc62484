# Shared by all rules: the validated workflow config and the stage graph.
from snakemake.utils import validate

from dlforge import workflow as graph

validate(config, "../schemas/config.schema.yaml")

EXP_DIR = graph.exp_dir_pattern()  # e.g. outputs/{exp}, from conf/paths


def deps(stage_name):
    """Input function: the files the stage depends on, from dlforge.workflow."""
    return lambda wildcards: graph.stage(wildcards.exp, stage_name).deps


wildcard_constraints:
    exp="|".join(config["experiments"]),
