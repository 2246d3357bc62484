# The workflow: `snakemake --profile workflow/profiles/local`.
# The rules come with dlforge; the experiments are listed in workflow/config.yaml.
configfile: "workflow/config.yaml"


from dlforge.stages.workflow import RULES


include: RULES


# Every output of every stage, so that a deleted file is made again.
rule all:
    default_target: True
    input:
        [f for exp in config["experiments"] for stage in graph.stages(exp) for f in stage.files],
