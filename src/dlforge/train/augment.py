"""Random augmentation of training image batches, from ``datamodule.augment``.

    datamodule.augment: {crop: {padding: 2}, affine: {degrees: 10}, flip: {p: 0.5}}

Each key names a transform, its value the parameters (missing ones take the
defaults of :data:`TRANSFORMS`; ``null`` or an absent key turns it off). The
transforms run in the order of :data:`TRANSFORMS` on an encoded batch
``(B, C, H, W)`` (normalised: 0 is the train split's mean), on the device the
batch is on, each one applied to an example with probability ``p``. Every
random draw comes from the ``torch.Generator`` the caller passes, so the same
seed gives the same batches and, in turn, the same weights.

Only training batches are augmented (:class:`dlforge.train.data.SnapshotDataModule`);
validation, test, evaluation and serving see the encoder's output as it is,
and the model package holds no augmentation.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from dlforge.core.errors import DlforgeError

KEY = "datamodule.augment"

# name -> default parameters, in the order the transforms run.
TRANSFORMS: dict[str, dict] = {
    # translate by up to `padding` pixels (pad, repeating the edges, then crop)
    "crop": {"p": 1.0, "padding": 2},
    # rotate by up to ±degrees, zoom by a factor in `scale`, shift by up to
    # `translate` of the height and width
    "affine": {"p": 0.5, "degrees": 10.0, "scale": [1.0, 1.0], "translate": 0.0},
    "flip": {"p": 0.5},  # mirror left-right (not for digits or text in images)
    # add up to ±brightness (in the train split's standard deviations); scale
    # each image's contrast by a factor in [1 - contrast, 1 + contrast]
    "jitter": {"p": 0.5, "brightness": 0.2, "contrast": 0.2},
    # set a rectangle covering a share `scale` of the image to the train mean
    "erase": {"p": 0.25, "scale": [0.02, 0.2]},
}


class Augment(nn.Module):
    """The configured transforms of a training batch (no parameters, no state).

    Args:
        transforms: name -> parameters, checked (:func:`build_augment` makes them).
    """

    def __init__(self, transforms: Mapping[str, Mapping]):
        super().__init__()
        self.transforms = {name: dict(transforms[name]) for name in TRANSFORMS
                           if name in transforms}

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)`` of the same dtype, randomly transformed."""
        for name, params in self.transforms.items():
            params = dict(params)
            chosen = _uniform(images, generator) < params.pop("p")  # (B,)
            changed = _APPLY[name](images, generator, **params)
            images = torch.where(chosen[:, None, None, None], changed, images)
        return images

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={params}" for name, params in self.transforms.items())


def batch_seed(seed: int, rank: int, index: int) -> int:
    """The generator seed of the ``index``-th training batch of process ``rank``:
    independent streams per batch and rank, the same on every run."""
    digest = hashlib.sha256(f"{seed}/{rank}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def build_augment(spec, encoder_kind: str | None = "image") -> Augment | None:
    """Check ``datamodule.augment`` and build it; None when no transform is on.

    Raises:
        DlforgeError: naming the key, for an unknown transform or parameter, a value
            out of range, or augmentation of an encoder whose inputs are not images.
    """
    if spec is None:
        return None
    spec = _plain(spec)
    if not isinstance(spec, Mapping):
        raise DlforgeError(f"{KEY}={spec!r} is not a mapping. Fix: name transforms with their "
                           f"parameters, e.g. {KEY}={{flip: {{p: 0.5}}}} ({', '.join(TRANSFORMS)})")
    for name in spec:
        if name not in TRANSFORMS:
            raise DlforgeError(f"{KEY}.{name} is not a transform. Fix: use one of "
                               f"{', '.join(TRANSFORMS)}")
    transforms = {name: _params(name, spec[name]) for name in TRANSFORMS
                  if spec.get(name) is not None}
    if not transforms:
        return None
    if encoder_kind != "image":
        raise DlforgeError(f"{KEY} is set ({', '.join(transforms)}) but model.encoder reads "
                           f"{encoder_kind or 'non-image'} inputs; augmentation applies to image "
                           f"inputs only. Fix: remove it (~{KEY}) or train an image model")
    return Augment(transforms)


def check_augment(cfg) -> None:
    """Fail before any work when ``datamodule.augment`` in a train config is wrong."""
    from hydra.utils import get_object

    spec = cfg.datamodule.get("augment")
    if spec is not None:
        build_augment(spec, getattr(get_object(cfg.model.encoder._target_), "kind", None))


def _plain(spec):
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(spec, DictConfig | ListConfig):
        return OmegaConf.to_container(spec, resolve=True)
    return spec


def _params(name: str, given) -> dict:
    key = f"{KEY}.{name}"
    if not isinstance(given, Mapping):
        raise DlforgeError(f"{key}={given!r} is not a mapping of parameters. Fix: give some of "
                           f"{TRANSFORMS[name]} (or {{}} for these defaults, null for off)")
    unknown = set(given) - set(TRANSFORMS[name])
    if unknown:
        raise DlforgeError(f"{key}.{sorted(unknown)[0]} is not a parameter of {name}. Fix: use "
                           f"{', '.join(TRANSFORMS[name])}")
    params = {**TRANSFORMS[name], **given}
    for param, value in params.items():
        params[param] = _CHECKS[(name, param) if (name, param) in _CHECKS else param](
            f"{key}.{param}", value)
    return params


def _number(low: float, high: float, integer: bool = False) -> Callable:
    def check(key: str, value):
        ok = isinstance(value, int if integer else int | float) and not isinstance(value, bool)
        if not ok or not low <= value <= high:
            kind = "an integer" if integer else "a number"
            raise DlforgeError(f"{key}={value!r} is outside [{low}, {high}]. Fix: {kind} "
                               f"from {low} to {high}")
        return value

    return check


def _range(low: float, high: float, example: list) -> Callable:
    """A ``[lo, hi]`` pair with ``low < lo <= hi <= high``."""

    def check(key: str, value):
        pair = list(value) if isinstance(value, list | tuple) else []
        numbers = len(pair) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool)
                                          for v in pair)
        if not numbers or not low < pair[0] <= pair[1] <= high:
            raise DlforgeError(f"{key}={value!r} is not a range [lo, hi] with {low} < lo <= hi "
                               f"<= {high}. Fix: e.g. {key}={example}")
        return [float(v) for v in pair]

    return check


_CHECKS: dict = {
    "p": _number(0, 1),
    "padding": _number(0, 64, integer=True),
    "degrees": _number(0, 180),
    ("affine", "scale"): _range(0, 10, [0.9, 1.1]),
    "translate": _number(0, 1),
    "brightness": _number(0, 10),
    "contrast": _number(0, 1),
    ("erase", "scale"): _range(0, 1, [0.02, 0.2]),
}


def _uniform(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B,) uniform in [0, 1) on the batch's device."""
    return torch.rand(images.shape[0], generator=generator, device=images.device)


def _symmetric(images: torch.Tensor, generator: torch.Generator, bound: float) -> torch.Tensor:
    """(B,) uniform in [-bound, bound]."""
    return (_uniform(images, generator) * 2 - 1) * bound


def _crop(images, generator, padding: int):
    if padding == 0:
        return images
    b, _, h, w = images.shape
    device = images.device
    padded = F.pad(images, (padding,) * 4, mode="replicate")  # (B, C, H+2p, W+2p)
    shifts = torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=device)
    rows = shifts[0][:, None] + torch.arange(h, device=device)  # (B, H)
    cols = shifts[1][:, None] + torch.arange(w, device=device)  # (B, W)
    batch = torch.arange(b, device=device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def _affine(images, generator, degrees: float, scale: list, translate: float):
    b, _, h, w = images.shape
    angle = _symmetric(images, generator, math.radians(degrees))
    zoom = scale[0] + _uniform(images, generator) * (scale[1] - scale[0])
    shift = torch.stack([_symmetric(images, generator, 2 * translate),  # [-1, 1] spans 2
                         _symmetric(images, generator, 2 * translate)], dim=1)  # (B, 2)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # Output -> input coordinates in [-1, 1] units; h/w and w/h keep the rotation
    # a rotation (not a shear) for images that are not square.
    theta = torch.stack([torch.stack([cos, -sin * h / w, shift[:, 0]], dim=1),
                         torch.stack([sin * w / h, cos, shift[:, 1]], dim=1)], dim=1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def _flip(images, generator):
    return images.flip(-1)


def _jitter(images, generator, brightness: float, contrast: float):
    offset = _symmetric(images, generator, brightness)[:, None, None, None]
    factor = 1 + _symmetric(images, generator, contrast)[:, None, None, None]
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * factor + mean + offset.to(images.dtype)).to(images.dtype)


def _erase(images, generator, scale: list):
    b, _, h, w = images.shape
    device = images.device
    area = (scale[0] + _uniform(images, generator) * (scale[1] - scale[0])) * h * w
    ratio = torch.exp(_symmetric(images, generator, math.log(3)))  # aspect in [1/3, 3]
    eh = torch.sqrt(area * ratio).round().clamp(1, h)
    ew = torch.sqrt(area / ratio).round().clamp(1, w)
    top = (_uniform(images, generator) * (h - eh + 1)).floor()
    left = (_uniform(images, generator) * (w - ew + 1)).floor()
    rows = torch.arange(h, device=device)[None, :]  # (1, H)
    cols = torch.arange(w, device=device)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])  # (B, H)
    inside_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])  # (B, W)
    box = inside_rows[:, None, :, None] & inside_cols[:, None, None, :]  # (B, 1, H, W)
    return images.masked_fill(box, 0)


_APPLY: dict[str, Callable] = {"crop": _crop, "affine": _affine, "flip": _flip,
                               "jitter": _jitter, "erase": _erase}
