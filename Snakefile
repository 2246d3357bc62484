# The dlforge workflow: `snakemake --profile workflow/profiles/local`.
# Rules only wire `dlforge` commands together; parameters live in conf/.
configfile: "workflow/config.yaml"


# `snakemake --report report.html`: the metrics and plots of every experiment.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/registry.smk"


# Every output of every stage, so that a deleted file is made again.
rule all:
    default_target: True
    input:
        [f for exp in config["experiments"] for stage in graph.stages(exp) for f in stage.files],
