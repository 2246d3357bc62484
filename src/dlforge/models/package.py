"""The model package: a self-contained folder that later stages load.

    model.json           the network's class (``module:Class``) and where it comes
                         from, its arguments, labels, task (single- or
                         multi-label), provenance
    preprocessing.json   the fitted input encoder
    weights.safetensors  the weights (no pickle)
    tokenizer/           an encoder's own files, when it has any (a Hugging Face
                         tokenizer; see ``save`` on the encoders)
    code/                the project's own code that defines the class, when it is
                         not part of an installed distribution: its top-level
                         package only, regular .py files only, imported under
                         names of its own (see :mod:`dlforge.models.source`)
    SHA256SUMS           digests of every file above

Loading rebuilds the class from its path and recorded arguments and reads the
weights; the only code that runs is an installed distribution's or the
package's own ``code/``, every file of which matches its digest.

``Predictor`` is preprocessing -> forward -> postprocessing, the one inference
path shared by evaluation, the MLflow pyfunc, batch prediction and serving.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from dlforge.core.errors import DlforgeError, InvalidInput
from dlforge.core.hashing import sha256_file
from dlforge.models.meta import meta_shapes
from dlforge.models.preprocessing import ENCODER_FILE, TokenizerEncoder, encoder_from_dict
from dlforge.models.source import (
    CODE,
    CODE_FILE,
    REPACKAGE,
    carry,
    class_path,
    describe,
    symlink_in,
)
from dlforge.models.source import import_class as _import_class

FORMAT = 2  # model.json's "format": what this dlforge writes and reads
FILES = ("model.json", "preprocessing.json", "weights.safetensors")  # in every package
EXTRA = (CODE, TokenizerEncoder.files)  # folders whose every file must be listed
SUMS_LINE = re.compile(r"(?P<digest>[0-9a-f]{64})  (?P<name>[^\n]+)")


def save_package(folder: Path, weights: dict[str, torch.Tensor], net_class: type,
                 arguments: dict, encoder, labels: list[str], multi_label: bool,
                 info: dict) -> Path:
    """Write a package into ``folder``.

    Args:
        weights: the network's full (unsharded) state dict.
        net_class: the network's class; ``net_class(**arguments)`` rebuilds it. Its
            code is carried under ``code/`` unless an installed distribution has it. A
            class may define ``package_arguments(arguments)``: the arguments that
            rebuild it offline (a pretrained backbone's config instead of its folder).
        encoder: the fitted encoder; one that defines ``save(folder)`` writes its own
            files into the package too.
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    path = class_path(net_class)
    source, root = describe(net_class)
    code = carry(root, folder) if root is not None else []
    if hasattr(net_class, "package_arguments"):
        arguments = net_class.package_arguments(arguments)
    own = encoder.save(folder) if hasattr(encoder, "save") else []
    spec = {"format": FORMAT, "class": path, "source": source, "arguments": arguments,
            "labels": labels, "multi_label": multi_label, **info}
    (folder / "model.json").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    (folder / "preprocessing.json").write_text(json.dumps(encoder.to_dict()) + "\n")
    state = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    save_file(state, folder / "weights.safetensors")
    sums = {f: sha256_file(folder / f) for f in (*FILES, *code, *own)}
    (folder / "SHA256SUMS").write_text(_sums_text(sums))
    return folder


@dataclass
class Predictor:
    """A loaded package: ``predict(inputs)`` -> labels and scores."""

    net: torch.nn.Module
    encoder: object
    labels: list[str]
    multi_label: bool
    spec: dict

    def encode(self, inputs: Sequence) -> list:
        """Each input as the network reads it (raises on an input it cannot read)."""
        return [self.encoder.encode(x) for x in inputs]

    def scores(self, inputs: Sequence) -> torch.Tensor:
        """Class probabilities ``(N, C)``: softmax, or sigmoid for multi-label models."""
        return self.scores_of(self.encode(inputs))

    @torch.inference_mode()
    def scores_of(self, encoded: Sequence) -> torch.Tensor:
        """:meth:`scores` of already encoded inputs: one forward pass."""
        batch = self.encoder.collate(encoded)
        device = next(self.net.parameters()).device
        logits = self.net(batch.to(device, non_blocking=True))
        probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=1)
        return probs.cpu()

    def predict(self, inputs: Sequence, top_k: int = 5, threshold: float = 0.5) -> list[dict]:
        """One dict per input: ``label``, ``score``, ``top_k`` (and ``labels`` if multi-label)."""
        return self.predict_encoded(self.encode(inputs), top_k, threshold)

    def predict_encoded(self, encoded: Sequence, top_k: int = 5,
                        threshold: float = 0.5) -> list[dict]:
        """:meth:`predict` of already encoded inputs."""
        probs = self.scores_of(encoded)
        k = min(top_k, len(self.labels))
        values, indices = probs.topk(k, dim=1)
        out = []
        for row, (vals, idx) in enumerate(zip(values.tolist(), indices.tolist(), strict=True)):
            item = {"label": self.labels[idx[0]], "score": vals[0],
                    "top_k": [{"label": self.labels[i], "score": v} for i, v in zip(idx, vals,
                                                                                    strict=True)]}
            if self.multi_label:
                item["labels"] = [self.labels[i] for i in
                                  (probs[row] >= threshold).nonzero().flatten().tolist()]
            out.append(item)
        return out


def load_package(folder: str | Path, device: str = "cpu") -> Predictor:
    """Load a package onto ``device`` ("cpu", "cuda:0", ...), refusing one whose files
    do not match their recorded digests, whose class is neither carried code nor of an
    installed distribution, or whose arguments do not fit its weights (checked
    before anything is allocated)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    sums = verify_package(folder)
    spec = json.loads((folder / "model.json").read_text())
    if spec.get("format", 1) != FORMAT:
        raise InvalidInput(folder / "model.json",
                           f"package format {spec.get('format', 1)}, and this dlforge reads "
                           f"format {FORMAT}", "train and register the model again with this "
                           "dlforge (dlforge train, then dlforge register)")
    build = _import_class(folder, spec, sums)
    check_architecture(folder, spec, build)
    net = build(**spec["arguments"])
    net.load_state_dict(load_file(folder / "weights.safetensors"))
    net.to(device).eval()
    return Predictor(net, read_encoder(folder), spec["labels"], spec["multi_label"], spec)


def read_encoder(folder: Path):
    """The package's fitted input encoder (no weights loaded, no digests checked)."""
    return encoder_from_dict(json.loads((Path(folder) / "preprocessing.json").read_text()),
                             Path(folder))


def check_architecture(folder: Path, spec: dict, build: type) -> None:
    """Raise unless ``build`` (``spec``'s class), built with its arguments, has exactly
    the parameter names and shapes stored in ``weights.safetensors``.

    The network is built on the ``meta`` device (shapes only, no memory) and the
    weights' shapes are read from the safetensors header, so an argument such as
    ``vocab_size: 1e9`` is refused before it allocates anything.
    """
    from safetensors import safe_open

    where = folder / "model.json"
    _check_integers(where, build, spec["arguments"])
    try:
        built = meta_shapes(build, spec["arguments"])
    except Exception as err:  # a wrong name, type or value of an argument
        raise DlforgeError(f"{where}: the arguments {spec['arguments']} do not build "
                           f"{spec['class']} ({err}). {REPACKAGE}"
                           ) from None
    with safe_open(folder / "weights.safetensors", framework="pt") as weights:
        names = weights.keys()
        stored = {k: tuple(weights.get_slice(k).get_shape()) for k in names}
    if built.keys() != stored.keys():
        missing, extra = sorted(built.keys() - stored.keys()), sorted(stored.keys() - built.keys())
        raise DlforgeError(f"{where}: {spec['class']} has parameters "
                           f"that weights.safetensors lacks ({missing}) or the file holds "
                           f"parameters it does not have ({extra}). {REPACKAGE}")
    for key, shape in built.items():
        if shape != stored[key]:
            raise DlforgeError(f"{where}: {_culprits(spec['arguments'], shape, stored[key])} "
                               f"gives {key} the shape {shape}, but weights.safetensors holds "
                               f"{stored[key]}. {REPACKAGE}")


def _check_integers(where: Path, build, arguments: dict) -> None:
    """Refuse a non-integer value (``1e9``) for an argument the architecture declares ``int``."""
    parameters = inspect.signature(build).parameters
    for key, value in arguments.items():
        declared = parameters[key].annotation if key in parameters else None
        if declared in (int, "int") and (not isinstance(value, int) or isinstance(value, bool)):
            raise DlforgeError(f"{where}: argument {key}={value!r} must be an integer. "
                               f"{REPACKAGE}")


def _culprits(arguments: dict, built: tuple, stored: tuple) -> str:
    """The arguments whose values are the dimensions that differ (all of them if none is)."""
    differing = {b for b, s in zip(built, stored, strict=False) if b != s}
    if len(built) != len(stored):
        differing |= set(built)
    named = {k: v for k, v in arguments.items()
             if isinstance(v, int | float) and not isinstance(v, bool) and v in differing}
    chosen = named or arguments
    return "argument " + ", ".join(f"{k}={v!r}" for k, v in chosen.items())


def verify_package(folder: Path) -> dict[str, str]:
    """Raise when a file is missing, was changed after the package was written, was
    added to its ``code/`` (code that would run unchecked) or ``tokenizer/``, or is
    carried code reached through a symbolic link.

    Returns each package file's sha256 (see :func:`read_sums`).
    """
    sums = read_sums(folder)
    for name, digest in sums.items():
        path = folder / name
        link = symlink_in(folder, name) if name.startswith(f"{CODE}/") else None
        if link is not None:
            raise DlforgeError(f"{link} is a symbolic link: a package's code must be regular "
                               f"files, and the package is refused. {REPACKAGE}")
        if not path.is_file() or sha256_file(path) != digest:
            raise DlforgeError(f"{path} is missing or does not match SHA256SUMS: the package "
                               f"was modified or damaged and is refused. {REPACKAGE}")
    for extra in EXTRA:
        for path in sorted((folder / extra).rglob("*")) if (folder / extra).is_dir() else []:
            if not path.is_dir() and path.relative_to(folder).as_posix() not in sums:
                raise DlforgeError(f"{path} is not listed in {folder / 'SHA256SUMS'}: a file "
                                   f"added to the package after it was written is refused. "
                                   f"{REPACKAGE}")
    return sums


def read_sums(folder: Path) -> dict[str, str]:
    """``SHA256SUMS`` as ``{file: sha256}``: the package's fixed files, its carried
    code files (``code/**.py``) and its encoder's files (``tokenizer/*``), once each.

    The listing is checked, not trusted: a line naming any other file (a path out of
    those folders, a ``..``, an unknown or repeated name), a malformed line, or a fixed
    package file that is not listed refuses the package. The files themselves are
    not hashed here.
    """
    sums_file = folder / "SHA256SUMS"
    if not sums_file.is_file():
        raise DlforgeError(f"{folder} is not a dlforge model package (no SHA256SUMS). "
                           "Fix: point at the model folder written by `dlforge train`")
    sums: dict[str, str] = {}
    for number, line in enumerate(sums_file.read_text().splitlines(), start=1):
        match = SUMS_LINE.fullmatch(line)
        problem = _line_problem(match, sums)
        if problem:
            raise DlforgeError(f"{sums_file} line {number} ({line!r}) {problem}: the package "
                               f"in {folder} is refused. {REPACKAGE}")
        sums[match["name"]] = match["digest"]
    missing = [f for f in FILES if f not in sums]
    if missing:
        raise DlforgeError(f"{sums_file} does not list {', '.join(missing)} (every package "
                           f"file must have a digest): the package in {folder} is refused. "
                           f"{REPACKAGE}")
    return sums


def _line_problem(match: re.Match | None, sums: dict[str, str]) -> str | None:
    """What is wrong with one parsed SHA256SUMS line (None: nothing)."""
    if not match:
        return "is not '<sha256>  <file>'"
    name = match["name"]
    if name not in FILES and not (CODE_FILE.fullmatch(name) or ENCODER_FILE.fullmatch(name)):
        # also a path out of code/, '..' or an absolute name
        return (f"names {name!r}, which is not a package file ({', '.join(FILES)}, "
                f"{CODE}/**.py or {TokenizerEncoder.files}/*)")
    if match["name"] in sums:
        return f"lists {match['name']} a second time"
    return None


def package_digest(folder: Path, check_files: bool = True) -> str:
    """The digest that identifies a package, as the registry records it: sha256 of its
    ``SHA256SUMS`` in the canonical form :func:`save_package` writes.

    Args:
        check_files: also hash every file against ``SHA256SUMS`` (False: only check
            the listing, for a package that :func:`load_package` will verify anyway).
    """
    sums = verify_package(folder) if check_files else read_sums(folder)
    return hashlib.sha256(_sums_text(sums).encode()).hexdigest()


def _sums_text(sums: dict[str, str]) -> str:
    code = sorted(name for name in sums if name not in FILES)
    return "".join(f"{sums[f]}  {f}\n" for f in (*FILES, *code))
