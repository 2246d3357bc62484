# Shared by all rules: the validated workflow config, the stage graph and the
# experiment layout, both from dlforge (dlforge.stages.workflow, dlforge.core.layout).
from snakemake.utils import validate

from dlforge.stages import dvcfiles, sections
from dlforge.stages import workflow as graph

validate(config, "config.schema.yaml")

# Each stage's config section (dlforge.stages.sections): the values it reads of its
# config. Where jobs read the project folder, each section is a file and an input of its
# stage, written now, before Snakemake compares inputs with outputs (a dry run included),
# and only where its values changed: an edit in conf/ re-runs the stages that read it.
# Under a default storage provider (the Kubernetes profile) a job's inputs come from
# storage, so the section's digest is a param of the job instead (section_param).
SECTION_FILES = workflow.storage_settings.default_storage_provider is None
if SECTION_FILES:
    sections.write_sections(config["experiments"])

# The experiment's files with the wildcard {exp}: outputs/{exp}/..., from conf/paths.
LAYOUT = graph.layout_pattern()
# A sweep worker's marker, with the wildcard {worker}.
WORKER_DONE = str(LAYOUT.sweep.worker_done("{worker}"))

# Outputs shown by `snakemake --report`, each experiment a category: the
# caption (report/ beside this file) of each, and the subcategory of each stage.
CAPTIONS = {
    ("sweep", "summary"): "sweep_summary.rst",
    ("sweep", "history"): "history.rst",
    ("sweep", "importances"): "importances.rst",
    ("train", "metrics"): "train_metrics.rst",
    ("train", "curves"): "curves.rst",
    ("evaluate", "metrics"): "eval_metrics.rst",
    ("evaluate", "per_class"): "per_class.rst",
    ("evaluate", "plot"): "confusion.rst",
    ("register", "record"): "register.rst",
}
SUBCATEGORIES = {"sweep": "sweep", "train": "training", "evaluate": "evaluation",
                 "register": "registry"}


def outputs(stage_name):
    """The stage's named outputs, as the stage graph declares them (also for dvc.yaml)."""
    named = {}
    for name, (kind, path) in graph.rule_outputs(stage_name).items():
        if kind == "dirs":
            path = directory(path)
        elif (stage_name, name) in CAPTIONS:
            path = report(path, caption=f"report/{CAPTIONS[stage_name, name]}",
                          category="{exp}", subcategory=SUBCATEGORIES[stage_name])
        named[name] = path
    return named


def log_file(stage_name):
    """The rule's log: the command's stdout and stderr (not Hydra's own job log)."""
    return str(LAYOUT.log_file(stage_name))


def first_output(stage_name):
    """The pattern of the stage's first output (its rule's output[0])."""
    return next(iter(graph.rule_outputs(stage_name).values()))[1]


def paths_overrides(first):
    """Param function: the job's `paths.*` overrides (dlforge.stages.workflow.job_paths),
    from `first`, its rule's first output, as declared and as the job sees it. Empty in
    the project folder; under a default storage provider, the folder Snakemake stages
    the job's files in; with `shared_dir`, the dataset store and snapshots there. Made
    from the job's output, it is no value whose change re-runs a job."""

    def overrides(wildcards, output):
        declared = first.format(**dict(wildcards.items()))
        return graph.job_paths(declared, output[0], config.get("shared_dir"))

    return overrides


def deps(stage_name):
    """Input function: the files the stage reads, from dlforge.stages.workflow, and its
    config section's file (see SECTION_FILES)."""

    def files(wildcards):
        stage = graph.stage(wildcards.exp, stage_name)
        return [*stage.deps, *([stage.config] if SECTION_FILES else [])]

    return files


def section_param(stage_name):
    """Param function: the digest of the stage's config section under a default storage
    provider (see SECTION_FILES); empty where the section is an input file."""

    def digest(wildcards):
        return "" if SECTION_FILES else sections.section_digest(wildcards.exp, stage_name)

    return digest


def sweep_workers_done(wildcards):
    """Input function of the sweep rule: its workers' markers (none with sweep_jobs 1)."""
    jobs = config["sweep_jobs"]
    if jobs == 1:
        return []
    # The layout's pattern that sweep_worker's output is made of, not that output
    # itself: under a default storage provider (the Kubernetes profile) the output
    # carries a storage object, which expand() refuses.
    return expand(WORKER_DONE, exp=wildcards.exp, worker=range(jobs))


wildcard_constraints:
    exp="|".join(config["experiments"]),
