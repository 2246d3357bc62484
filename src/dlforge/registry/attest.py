"""Whether a model trained again from its record is the registered one, and the
attestation that says so on the model version (``dlforge verify``).

    integrity_problem(folder, registered)   the package's files against its SHA256SUMS
                                            and the digest the registry holds
    compare_weights(recorded, rerun)        two packages' weights, bit for bit
    compare_metrics(recorded, rerun, tol)   each test metric, within a tolerance
    compare_exact(recorded, rescored)       an evaluation scored again, value for value
    attest(client, name, version, tags)     the ``dlforge.verify.*`` tags, then the card

Verdicts and exit codes: ``identical`` and ``within_tolerance`` 0, ``differs`` 1,
``unavailable`` 2 (the inputs could not be recreated). The tags:

    dlforge.verify.verdict    one of the verdicts
    dlforge.verify.compared   weights | metrics
    dlforge.verify.details    what was compared and found, in one line
    dlforge.verify.torch, .cuda, .device, .date   where and when it was verified
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from dlforge.core.errors import DlforgeError
from dlforge.core.tracking import Tag

log = logging.getLogger(__name__)

IDENTICAL, WITHIN, DIFFERS, UNAVAILABLE = "identical", "within_tolerance", "differs", "unavailable"
EXIT_CODES = {IDENTICAL: 0, WITHIN: 0, DIFFERS: 1, UNAVAILABLE: 2}
CONCLUSIVE = (IDENTICAL, WITHIN, DIFFERS)  # what a later "unavailable" does not replace
WEIGHTS, METRICS = "weights", "metrics"  # dlforge.verify.compared
VERDICT_TAG = Tag.VERIFY + "verdict"
DETAILS_LIMIT = 500  # characters of dlforge.verify.details (the summary has them all)
SHOWN_TENSORS = 3  # differing tensors named in the details
INTEGRITY = "integrity check failed"


class Unavailable(DlforgeError):
    """An input of the re-run (snapshot, store, record, package) cannot be recreated."""

    exit_code = 2


@dataclass(frozen=True)
class Outcome:
    """What a comparison found.

    Args:
        verdict: :data:`IDENTICAL`, :data:`WITHIN`, :data:`DIFFERS` or :data:`UNAVAILABLE`.
        compared: :data:`WEIGHTS` or :data:`METRICS` ("" when nothing was compared).
        details: one line: what was compared and found (and, when it differs, which check).
        differences: per metric ``{"recorded", "rerun", "difference"}``.
    """

    verdict: str
    compared: str
    details: str
    differences: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


def integrity_problem(folder: Path, registered: str | None) -> str | None:
    """What is wrong with the package in ``folder`` (None: nothing): a file that does not
    match its SHA256SUMS, or a listing whose digest is not ``registered`` (the
    ``dlforge.package_sha256`` the registry holds; None: not checked)."""
    from dlforge.models.package import package_digest

    try:
        digest = package_digest(folder)
    except DlforgeError as err:
        return str(err).split(" Fix: ")[0]
    if registered is not None and digest != registered:
        return (f"its digest {digest[:12]} is not the {registered[:12]} the registry holds "
                f"for it")
    return None


def tensors(path: Path) -> dict:
    """The tensors of a ``weights.safetensors`` file, by name (no pickle)."""
    from safetensors.torch import load_file

    return load_file(path)


def tensors_digest(weights: dict) -> str:
    """sha256 over the tensors in name order: each one's name, dtype, shape and bytes."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(weights.items()):
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)  # any dtype
        digest.update(raw.numpy().tobytes())
    return digest.hexdigest()


def compare_weights(recorded: Path, rerun: Path) -> Outcome:
    """The weights of package ``recorded`` against those of ``rerun``, bit for bit."""
    old, new = tensors(recorded / "weights.safetensors"), tensors(rerun / "weights.safetensors")
    before, after = tensors_digest(old), tensors_digest(new)
    if before == after:
        return Outcome(IDENTICAL, WEIGHTS, f"weights identical bit for bit (sha256 "
                                           f"{before[:12]} over {len(old)} tensors)")
    return Outcome(DIFFERS, WEIGHTS, f"re-run differs: weights sha256 {after[:12]}, the "
                                     f"package's {before[:12]}; {_tensor_changes(old, new)}")


def _tensor_changes(old: dict, new: dict) -> str:
    """Which tensors differ, and by how much at most."""
    if old.keys() != new.keys():
        return (f"tensors only in the package: {sorted(old.keys() - new.keys())}, only in "
                f"the re-run: {sorted(new.keys() - old.keys())}")
    changed = []
    for name in sorted(old):
        a, b = old[name], new[name]
        if a.shape != b.shape or a.dtype != b.dtype:
            changed.append(f"{name} ({tuple(a.shape)} {a.dtype} vs {tuple(b.shape)} {b.dtype})")
        elif not bool((a == b).all()):
            largest = float((a.double() - b.double()).abs().max())
            changed.append(f"{name} (largest difference {largest:.3g})")
    shown = ", ".join(changed[:SHOWN_TENSORS]) + (", ..." if len(changed) > SHOWN_TENSORS else "")
    return f"{len(changed)} of {len(old)} tensors differ: {shown}"


def compare_metrics(recorded: dict, rerun: dict, tolerance: float) -> Outcome:
    """Each test metric (``test/...``) of the training ``recorded`` against the re-run's:
    identical when all are equal, within tolerance when none differs by more than
    ``tolerance``."""
    names = sorted(k for k in recorded if k.startswith("test/") and k in rerun)
    if not names:
        raise Unavailable(f"the record has no test metric the re-run also has (recorded: "
                          f"{sorted(recorded)}). Fix: train the model again with `dlforge "
                          "train`, which records them")
    differences = {k: _difference(recorded[k], rerun[k]) for k in names}
    worst = max(names, key=lambda k: differences[k]["difference"])
    largest = differences[worst]["difference"]
    if largest == 0:
        return Outcome(IDENTICAL, METRICS, f"test metrics identical ({', '.join(names)})",
                       differences)
    verdict = WITHIN if largest <= tolerance else DIFFERS
    said = "within" if verdict == WITHIN else "re-run differs: beyond"
    return Outcome(verdict, METRICS, f"{said} tolerance {tolerance:g}: largest difference "
                                     f"{worst} {largest:.6g}", differences)


def compare_exact(recorded: dict, rescored: dict) -> Outcome:
    """An evaluation scored again (``rescored``) against the recorded one, every number
    equal (both as :func:`dlforge.registry.evaluate.evaluate_package` rounds them)."""
    names = sorted(k for k, v in recorded.items()
                   if isinstance(v, int | float) and not isinstance(v, bool) and k in rescored)
    if not names:
        raise Unavailable(f"the recorded evaluation has no metric to compare ({recorded}). "
                          "Fix: run `dlforge evaluate` for the model's experiment")
    differences = {k: _difference(recorded[k], rescored[k]) for k in names}
    changed = [k for k in names if differences[k]["difference"] != 0]
    if not changed:
        return Outcome(IDENTICAL, METRICS, "evaluate-only: the package re-scored on the test "
                                           f"split gives the recorded {', '.join(names)}",
                       differences)
    return Outcome(DIFFERS, METRICS, f"evaluate-only: re-scored, the package differs from the "
                                     f"recorded evaluation in {', '.join(changed)}", differences)


def _difference(recorded, rerun) -> dict:
    rerun = float(rerun) if isinstance(rerun, int | float) else float("nan")
    gap = abs(rerun - float(recorded))
    return {"recorded": recorded, "rerun": rerun,
            "difference": gap if gap == gap else float("inf")}  # NaN: no value to compare


def environment(device: str) -> dict[str, str]:
    """Where and when this verification ran, as the ``dlforge.verify.*`` tags hold it."""
    import torch

    return {"torch": torch.__version__, "cuda": torch.version.cuda or "none", "device": device,
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


def attestation_tags(outcome: Outcome, where: dict[str, str]) -> dict[str, str]:
    """The version tags of ``outcome``, verified where :func:`environment` says."""
    details = outcome.details
    if len(details) > DETAILS_LIMIT:
        details = details[:DETAILS_LIMIT - 3] + "..."
    found = {"verdict": outcome.verdict, "compared": outcome.compared or "-",
             "details": details, **where}
    return {Tag.VERIFY + k: v for k, v in found.items()}


def attest(client, name: str, version: str, tags: dict[str, str]) -> bool:
    """Write ``tags`` (:func:`attestation_tags`) on ``name`` version ``version`` and render
    its model card again. An ``unavailable`` verdict does not replace a conclusive one
    (the inputs were missing here, not the evidence elsewhere). Returns whether written.

    Nothing else of the version changes: its package, its digest, its run and source.
    """
    from dlforge.registry.card import publish_card

    held = client.get_model_version(name, version).tags.get(VERDICT_TAG)
    if tags[VERDICT_TAG] == UNAVAILABLE and held in CONCLUSIVE:
        log.info("%s version %s keeps its verdict %r: this verification lacked its inputs",
                 name, version, held)
        return False
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    try:
        publish_card(client, name, version)
    except DlforgeError as err:  # the tags are the attestation; the card only shows it
        log.warning("the model card of %s version %s is not updated: %s", name, version, err)
    return True
