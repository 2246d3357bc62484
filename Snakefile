# The dlforge workflow: `snakemake --profile workflow/profiles/local`.
# Rules only wire `dlforge` commands together; parameters live in conf/.
configfile: "workflow/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/registry.smk"


rule all:
    default_target: True
    input:
        expand(rules.register.output, exp=config["experiments"]),
