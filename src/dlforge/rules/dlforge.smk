# dlforge's rules, shipped inside the package. A project's Snakefile loads its
# workflow config, includes this file and asks for what it wants built:
#
#     configfile: "workflow/config.yaml"
#     from dlforge.stages.workflow import RULES
#     include: RULES
#     rule all: ...
#
# Rules only wire `dlforge` commands together; parameters live in conf/.


# `snakemake --report report.html`: the metrics and plots of every experiment.
report: "report/workflow.rst"

# The software of every rule: dlforge and the project, in the workflow config's
# image ($VARIABLES expanded: the Kubernetes profile names its pods' image), or
# the environment Snakemake runs in.
container: os.path.expandvars(config["container"]) if config.get("container") else None


include: "common.smk"
include: "data.smk"
include: "sweep.smk"
include: "train.smk"
include: "registry.smk"


# Where the project has a dvc.yaml, params.yaml and dvc.yaml follow conf/ before any job
# runs (dlforge.stages.dvcfiles): what DVC's first stage does in `dvc repro`.
onstart:
    dvcfiles.prepare_run()


# In a DVC project, record what ran in dvc.lock as `dvc repro` would: `dvc status`
# after a Snakemake run is then clean, and `dvc metrics diff` has both sides.
onsuccess:
    built = dvcfiles.built_dvc_stages(config["experiments"])
    if built:
        shell("dvc commit --force --quiet " + " ".join(built))
