"""A network's parameter shapes, from building it on the ``meta`` device.

Meta tensors hold shapes and no values, so the initialisers a network runs as it is
built (``nn.init.normal_``, ``Tensor.uniform_``, ...) have nothing to do there. They
are skipped: on the meta device some of them reach torch's Python reference
implementations, whose first call imports the whole of TorchDynamo (seconds of CPU
in a process that only loads a model).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.overrides import TorchFunctionMode

# Functions that only write values into the tensor they are given (and return it).
_TENSOR_FILLS = ("normal_", "uniform_", "fill_", "zero_", "random_", "exponential_",
                 "geometric_", "log_normal_", "cauchy_", "bernoulli_")
_INITIALISERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
                 "eye_", "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
                 "kaiming_normal_", "orthogonal_", "sparse_")
VALUE_ONLY = frozenset([getattr(torch.Tensor, name) for name in _TENSOR_FILLS]
                       + [getattr(torch.nn.init, name) for name in _INITIALISERS])


class _SkipMetaFills(TorchFunctionMode):
    """Skip :data:`VALUE_ONLY` calls on meta tensors (a thread's own mode)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in VALUE_ONLY:  # nn.init passes its tensor by keyword
            tensor = args[0] if args else kwargs.get("tensor")
            if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                return tensor
        return func(*args, **kwargs)


def meta_shapes(build: Callable[..., torch.nn.Module], arguments: dict) -> dict[str, tuple]:
    """Each state-dict entry's shape of ``build(**arguments)``, built on the meta
    device (no memory allocated, no initialiser run)."""
    with torch.device("meta"), _SkipMetaFills():
        net = build(**arguments)
    return {key: tuple(value.shape) for key, value in net.state_dict().items()}
