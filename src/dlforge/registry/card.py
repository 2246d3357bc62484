"""A registered version's model card, rendered from the registry's record (:func:`render_card`).

    ---                              front matter: Hugging Face ``model-index`` (task,
    library_name: dlforge            dataset with the snapshot id as its revision, the
    model-index: [...]               evaluation's metrics), so hubs and tools can read it
    ---
    # NAME version N
    ## Intended use, ## Limitations  the experiment's ``model_card:`` text, or a note
    ## Data                          snapshot, commits and sources, counts, labels
    ## Training                      run, model, optimizer, lr, batch size, epochs, seed, cost
    ## Evaluation                    metrics with 95% intervals, weakest classes, OOS recall
    ## Gate                          the verdict and its reason, the champion history
    ## Attestation                   ``dlforge.verify.*`` tags, once a version has them

Everything comes from the tracking store (the version's tags, its training run's
params, metrics and ``eval/`` and ``lineage/`` artifacts, the model's alias history),
so :func:`publish_card` can write the card again for any version, from any machine
that reaches the store.

Where the card lives: the version's description (Markdown, shown by the MLflow UI;
cut to whole sections at ``DESCRIPTION_LIMIT``) and ``MODEL_CARD.md`` at the root of
the version's artifacts, next to ``MLmodel`` and outside the package folder
(``data/model``). The package digest (``dlforge.package_sha256``) is computed at
training, before the evaluation and the gate's verdict exist, and covers exactly
the package's files; the card, written at registration and again when a version is
attested, is kept out of it, so a new card never changes what the digest vouches
for. The card has a digest of its own instead: the sha256 of ``MODEL_CARD.md`` is
the version tag ``dlforge.card_sha256``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import yaml

from dlforge.core.errors import DlforgeError
from dlforge.core.tracking import Tag
from dlforge.registry import models as registry
from dlforge.registry import scores
from dlforge.registry.lineage import RUN_PARAMS, lineage

CARD_FILE = "MODEL_CARD.md"
CARD_TAG = "dlforge.card_sha256"  # sha256 of the version's MODEL_CARD.md
TEXT_TAG = "dlforge.card."  # + intended_use / limitations: the experiment's model_card text
VERDICT_TAG = "dlforge.gate_verdict"  # "champion" or "candidate", at registration
REASON_TAG = "dlforge.gate_reason"  # the gate's reason for its verdict
OOS_TAG = "dlforge.oos_label"  # the out-of-scope label the evaluation scored
VERIFY_TAG = "dlforge.verify."  # prefix of the tags an attestation writes
TEXT_KEYS = ("intended_use", "limitations")
DESCRIPTION_LIMIT = 5000  # MLflow's SQL stores keep a description in VARCHAR(5000)
WEAKEST = 5  # classes listed by lowest F1
SHOWN_LABELS = 10  # label distribution: all labels up to this many, else the largest
SHOWN_ROWS = 10  # commits and champion switches: the newest this many
# The evaluation's metrics as Hugging Face metric ids, pretty names and arguments.
HUB_METRICS = {"accuracy": ("accuracy", "Accuracy", None),
               "macro_f1": ("f1", "Macro F1", {"average": "macro"}),
               "micro_f1": ("f1", "Micro F1", {"average": "micro"}),
               "in_scope_accuracy": ("accuracy", "In-scope accuracy", None),
               "oos_recall": ("recall", "Out-of-scope recall", None),
               "exact_match": ("exact_match", "Exact match", None),
               "hamming_loss": ("hamming_loss", "Hamming loss", None)}


def publish_card(client, name: str, version: str) -> str:
    """Render the card of ``name`` version ``version`` and write it: the version's
    description, ``MODEL_CARD.md`` in its artifacts and its sha256 tag. Returns the card."""
    card = render_card(client, name, version)
    model = client.get_model_version(name, version)
    with tempfile.TemporaryDirectory(prefix="dlforge-card-") as tmp:
        path = Path(tmp) / CARD_FILE
        path.write_text(card, encoding="utf-8")
        model_id = model.model_id or (model.source.removeprefix("models:/")
                                      if model.source.startswith("models:/m-") else None)
        if model_id:  # the version's artifacts are its logged model's
            client.log_model_artifact(model_id, str(path))
        else:  # a version registered from a run's folder: next to it, in the run
            client.log_artifact(model.run_id, str(path))
    client.update_model_version(name, version, description=fit(card, DESCRIPTION_LIMIT))
    client.set_model_version_tag(name, version, CARD_TAG,
                                 hashlib.sha256(card.encode("utf-8")).hexdigest())
    return card


def render_card(client, name: str, version: str) -> str:
    """The model card of ``name`` version ``version``, from the tracking store."""
    return render(gather(client, name, version))


def gather(client, name: str, version: str) -> dict:
    """What the card shows, read from the store: the version's lineage (its dlforge tags,
    run, snapshot and commits), its evaluation and the champion's alias history."""
    record = lineage(client, f"models:/{name}/{version}")
    record["evaluation"] = _evaluation(record["run"]["run_id"], f"models:/{name}/{version}")
    record["history"] = [e for e in registry.history(client, name) if e["alias"] == "champion"]
    return record


def _evaluation(run_id: str, uri: str) -> dict:
    """The evaluation logged to run ``run_id``: metrics, per-class rows and, when logged,
    each test example's (actual, predicted) labels."""
    import mlflow
    from mlflow.exceptions import MlflowException

    def load(file: str) -> str:
        return mlflow.artifacts.load_text(f"runs:/{run_id}/eval/{file}")

    try:
        metrics, per_class = json.loads(load("metrics.json")), load("per_class.csv")
    except (MlflowException, OSError):
        raise DlforgeError(f"run {run_id} of {uri} has no eval/metrics.json or "
                           "eval/per_class.csv. Fix: run `dlforge evaluate` for its "
                           "experiment, then render the card again") from None
    try:
        outcomes = [(r["actual"], r["predicted"]) for r in csv.DictReader(
            io.StringIO(load("confusion.csv")))]
    except (MlflowException, OSError):  # logged by evaluations since cards exist
        outcomes = None
    rows = [{"label": r["label"], "support": int(r["support"]),
             **{k: float(r[k]) for k in ("precision", "recall", "f1")}}
            for r in csv.DictReader(io.StringIO(per_class))]
    return {"metrics": metrics, "per_class": rows, "outcomes": outcomes}


def render(record: dict) -> str:
    """The card of a :func:`gather` record (pure: the same record, the same card)."""
    model = record["model"]
    sections = [_intended(record), _data(record), _training(record), _evaluation_section(record),
                _gate(record), _attestation(model["tags"]), _provenance(model["tags"])]
    head = (f"# {model['name']} version {model['version']}\n\n"
            f"The model card of `models:/{model['name']}/{model['version']}`, written by "
            "dlforge from the registry's record.\n")
    return "\n".join([_front_matter(record), head, *filter(None, sections)])


def fit(card: str, limit: int) -> str:
    """``card`` within ``limit`` characters: whole ``## `` sections, in order, as many as
    fit, and a note naming those left out (they are in ``MODEL_CARD.md``)."""
    if len(card) <= limit:
        return card
    head, *sections = card.split("\n## ")
    kept, left = [head], []
    note = f"\n_Sections left out here for length: {{}}; see {CARD_FILE} in the version's "\
           "artifacts._\n"
    for section in sections:
        title = section.split("\n", 1)[0]
        room = limit - len(note.format(", ".join([*left, title])))
        if len("\n## ".join([*kept, section])) <= room:
            kept.append(section)
        else:
            left.append(title)
    return "\n## ".join(kept) + note.format(", ".join(left))


def _front_matter(record: dict) -> str:
    """YAML front matter: library, tags and the Hugging Face ``model-index``."""
    snap, metrics = record["snapshot"], record["evaluation"]["metrics"]
    hub = []
    for key, value in metrics.items():
        if isinstance(value, float):
            kind, pretty, args = HUB_METRICS.get(key, (key, key, None))
            hub.append({"type": kind, "value": value, "name": pretty}
                       | ({"args": args} if args else {}))
    task = _hub_task(snap.get("type"))
    front = {"library_name": "dlforge", "tags": ["dlforge", snap.get("type") or "unknown"],
             "model-index": [{"name": record["model"]["name"], "results": [{
                 "task": {"type": task, "name": task.replace("-", " ").capitalize()},
                 "dataset": {"name": snap["dataset"], "type": snap["dataset"], "split": "test",
                             "revision": snap["version"]},
                 "metrics": hub}]}]}
    # Flow style for the innermost mappings ({type: accuracy, value: ...}): compact where a
    # Markdown view (the MLflow UI) shows the front matter as text; the blank line keeps
    # it from reading the last line as a heading.
    text = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, default_flow_style=None,
                          width=100)
    return f"---\n{text}\n---\n"


def _hub_task(kind: str | None) -> str:
    """The Hugging Face task of a classifier of dataset type ``kind``; "other" when the
    type names none or is not installed here."""
    from dlforge.data.types import get_type

    try:
        return get_type(kind).hub_task or "other"
    except DlforgeError:
        return "other"


def _intended(record: dict) -> str:
    tags, experiment = record["model"]["tags"], record["run"]["experiment"]
    parts = []
    for key in TEXT_KEYS:
        title = key.replace("_", " ").capitalize()
        text = tags.get(TEXT_TAG + key) or (
            f"_The experiment gives none._ Add it as `model_card.{key}` in "
            f"conf/experiment/{experiment}.yaml; the next version registered carries it.")
        parts.append(f"## {title}\n\n{text.strip()}\n")
    return "\n".join(parts)


def _data(record: dict) -> str:
    snap, commits, sources = record["snapshot"], record["commits"], record["sources"]
    counts = snap.get("counts", {})
    lines = [f"## Data\n\nDataset `{snap['dataset']}` ({snap.get('type')}), snapshot "
             f"`{snap['version']}` of {snap.get('created_at')}: "
             + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("train", "val", "test"))
             + f" examples, {snap['label_count']} labels"
             + (" (multi-label)" if snap.get("multi_label") else "") + ".\n",
             f"Commits ({_newest(len(commits))}):\n",
             "| commit | created | rows | message | source | source sha256 |",
             "|---|---|---|---|---|---|"]
    for commit, source in list(zip(commits, sources, strict=True))[-SHOWN_ROWS:]:
        lines.append(_row(commit["id"], commit["created_at"], commit["rows"],
                          commit["message"] or "", source.get("path"),
                          f"`{str(source.get('digest'))[:12]}`"))
    return "\n".join(lines) + "\n\n" + _labels(snap) + "\n"


def _labels(snap: dict) -> str:
    """Examples per label and split: every label when few, else the largest in train."""
    counts = snap.get("label_counts", {})
    train = counts.get("train", {})
    labels = sorted(snap.get("labels", []), key=lambda label: (-train.get(label, 0), label))
    shown = labels[:SHOWN_LABELS]
    which = (f"the {len(shown)} largest of {len(labels)} by training examples"
             if len(labels) > len(shown) else "all labels")
    lines = [f"Label distribution ({which}):\n", "| label | train | val | test |",
             "|---|---|---|---|"]
    lines += [_row(label, *(counts.get(s, {}).get(label, 0) for s in ("train", "val", "test")))
              for label in shown]
    return "\n".join(lines)


def _training(record: dict) -> str:
    run = record["run"]
    params = run["params"]
    args = ", ".join(f"{k.removeprefix('model.net.')}={v}" for k, v in params.items()
                     if k.startswith("model.net.") and k != "model.net._target_")
    names = dict(zip(RUN_PARAMS, ("model", "optimizer", "learning rate", "epochs (at most)",
                                  "batch size", "seed"), strict=True))
    dirty = " with uncommitted changes" if run["git_dirty"] == "true" else ""
    lines = [f"## Training\n\nMLflow run `{run['run_id']}` (experiment `{run['experiment']}`, "
             f"code `{run['git_commit'] or 'not recorded'}`{dirty}, config hash "
             f"`{(run['config_hash'] or 'not recorded')[:12]}`, dlforge "
             f"{run['dlforge_version']}).\n", "| setting | value |", "|---|---|"]
    for key, title in names.items():
        value = params.get(key, "not recorded")
        lines.append(_row(title, f"`{value}`" + (f" ({args})" if key == RUN_PARAMS[0]
                                                  and args else "")))
    if run.get("cost"):  # the figures the run records (lineage: its cost.* metrics)
        lines.append("\nCost: " + ", ".join(f"{k} {_amount(k, v)}"
                                            for k, v in sorted(run["cost"].items())) + ".")
    return "\n".join(lines) + "\n"


def _amount(name: str, value: float) -> str:
    """A cost figure with its unit, read from its name (``wall_seconds``: "18.2 s")."""
    units = {"_seconds": (1, "s", 1), "_bytes": (2**20, "MiB", 1), "_joules": (1, "J", 0)}
    for suffix, (scale, unit, digits) in units.items():
        if name.endswith(suffix):
            return f"{value / scale:.{digits}f} {unit}"
    return f"{value:g}"


def _evaluation_section(record: dict) -> str:
    evaluation = record["evaluation"]
    metrics, rows = evaluation["metrics"], evaluation["per_class"]
    intervals = _intervals(metrics, rows, evaluation["outcomes"],
                           record["model"]["tags"].get(OOS_TAG))
    lines = [f"## Evaluation\n\nOn the test split of snapshot `{metrics.get('snapshot')}` "
             f"({metrics.get('examples')} examples).\n",
             "| metric | value | 95% interval |", "|---|---|---|"]
    for key, value in metrics.items():
        if isinstance(value, float):
            low_high, method = intervals.get(key, (None, None))
            shown = f"{low_high[0]:.4f} – {low_high[1]:.4f} ({method})" if low_high else "—"
            lines.append(_row(HUB_METRICS.get(key, (key, key))[1], f"{value:.4f}", shown))
    oos = record["model"]["tags"].get(OOS_TAG)
    if "oos_recall" in metrics and oos:
        lines.append(f"\nOut-of-scope label `{oos}`: recall {metrics['oos_recall']:.4f}, the "
                     "share of its test examples predicted out of scope.")
    weakest = weakest_classes(rows)
    lines += [f"\nThe {len(weakest)} weakest classes by F1:\n",
              "| label | F1 | precision | recall | support |", "|---|---|---|---|---|"]
    lines += [_row(r["label"], *(f"{r[k]:.4f}" for k in ("f1", "precision", "recall")),
                   r["support"]) for r in weakest]
    return "\n".join(lines) + "\n"


def weakest_classes(rows: list[dict], n: int = WEAKEST) -> list[dict]:
    """The ``n`` per-class rows with the lowest F1 (ties: fewer examples, then label),
    among the classes the test split has."""
    present = [r for r in rows if r["support"] > 0]
    return sorted(present, key=lambda r: (r["f1"], r["support"], r["label"]))[:n]


def _intervals(metrics: dict, rows: list[dict], outcomes, oos: str | None) -> dict:
    """95% intervals, ``{metric: ((low, high), method)}``: Wilson for the proportions,
    a bootstrap of the test examples for macro-F1 (when their outcomes are recorded)."""
    n = metrics.get("examples") or 0
    support = {r["label"]: r["support"] for r in rows}
    sizes = {"accuracy": n, "exact_match": n}
    if oos in support:
        sizes |= {"oos_recall": support[oos], "in_scope_accuracy": n - support[oos]}
    out = {key: (scores.wilson_interval(round(metrics[key] * size), size), "Wilson")
           for key, size in sizes.items() if isinstance(metrics.get(key), float) and size}
    if outcomes and isinstance(metrics.get("macro_f1"), float):
        index = {r["label"]: i for i, r in enumerate(rows)}
        actual, predicted = (np.array([index[o[i]] for o in outcomes]) for i in (0, 1))
        out["macro_f1"] = (scores.bootstrap_interval("macro_f1", actual, predicted, len(rows)),
                           "bootstrap")
    return out


def _gate(record: dict) -> str:
    tags, model = record["model"]["tags"], record["model"]
    verdict = tags.get(VERDICT_TAG)
    said = {"champion": "**champion**", "candidate": "**not promoted** (it stays `candidate`)"}
    lines = [f"## Gate\n\nGate metric `{tags.get('dlforge.gate_metric')}`. Verdict at "
             f"registration: {said.get(verdict, 'not recorded')}"
             + (f": {tags[REASON_TAG]}." if REASON_TAG in tags else ".")
             + f" Aliases now: {', '.join(f'`{a}`' for a in model['aliases']) or 'none'}.\n"]
    history = record["history"][-SHOWN_ROWS:]
    if history:
        lines += [f"Champion history ({_newest(len(record['history']))}):\n",
                  "| at | version | previous | reason |", "|---|---|---|---|"]
        lines += [_row(e["at"], e["version"], e["previous"] or "—", e["reason"])
                  for e in history]
    return "\n".join(lines) + "\n"


def _attestation(tags: dict) -> str | None:
    found = {k.removeprefix(VERIFY_TAG): v for k, v in sorted(tags.items())
             if k.startswith(VERIFY_TAG)}
    if not found:
        return None
    return "\n".join(["## Attestation\n", "| check | result |", "|---|---|",
                      *(_row(k, v) for k, v in found.items())]) + "\n"


def _provenance(tags: dict) -> str:
    return ("## Files\n\nThe package's files have sha256 digest "
            f"`{tags.get('dlforge.package_sha256')}` (tag `dlforge.package_sha256`, checked "
            f"whenever dlforge loads the version); this card is {CARD_FILE} next to the "
            f"package, its sha256 in tag `{CARD_TAG}`. Snapshot `{tags.get(Tag.SNAPSHOT)}`, "
            f"run `{tags.get('dlforge.run_id')}`.\n")


def _newest(count: int) -> str:
    """How many rows of ``count`` a table shows, oldest first."""
    return (f"the newest {SHOWN_ROWS} of {count}, oldest first" if count > SHOWN_ROWS
            else f"{count}, oldest first")


def _row(*cells) -> str:
    """A Markdown table row; a cell's pipes and line breaks would break the table."""
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
