"""Search spaces as data: ``hpo.space`` in the config, validated before any trial.

    space:
      optimizer.lr: {type: float, low: 1e-4, high: 1e-2, log: true}
      model.net.dropout: {type: float, low: 0.0, high: 0.5, step: 0.1}
      model.net.hidden_dim: {type: categorical, choices: [128, 256]}

Every key is a dotted path into the training config; a sampled trial becomes
Hydra overrides of those paths, so a trial trains exactly like ``dlforge train``
with those overrides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dlforge.errors import DlforgeError

_MISSING = object()


@dataclass(frozen=True)
class Param:
    """One dimension of a search space."""

    key: str            # dotted path into the training config
    type: str           # float, int or categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """Sample a value with an Optuna trial."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def override(self, value: Any) -> str:
        """``key=value`` in Hydra's override grammar."""
        if isinstance(value, str):
            return f"{self.key}='{value}'"
        return f"{self.key}={'null' if value is None else value}"


def parse_space(space: DictConfig | dict, train_cfg: DictConfig) -> list[Param]:
    """Validate ``hpo.space`` against the training config.

    Raises:
        DlforgeError: naming ``hpo.space.<key>`` and what to change.
    """
    entries = OmegaConf.to_container(space, resolve=True) if isinstance(space, DictConfig) \
        else dict(space)
    if not entries:
        raise DlforgeError("hpo.space is empty. Fix: declare at least one parameter, e.g. "
                           "optimizer.lr: {type: float, low: 1e-4, high: 1e-2, log: true}")
    return [_parse(key, spec, train_cfg) for key, spec in entries.items()]


def _parse(key: str, spec: Any, train_cfg: DictConfig) -> Param:
    where = f"hpo.space.{key}"
    if OmegaConf.select(train_cfg, key, default=_MISSING) is _MISSING:
        raise DlforgeError(f"{where}: '{key}' is not a key of the training config. Fix: use a "
                           "dotted path that `dlforge train experiment=... --cfg job` shows")
    if not isinstance(spec, dict) or "type" not in spec:
        raise DlforgeError(f"{where}: expected a mapping with 'type' (float, int or categorical)")
    kind = spec["type"]
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise DlforgeError(f"{where}: a categorical parameter needs a non-empty 'choices' list")
        return Param(key, kind, choices=tuple(choices))
    if kind not in ("float", "int"):
        raise DlforgeError(f"{where}: unknown type {kind!r}. Fix: use float, int or categorical")
    return _numeric(where, key, kind, spec)


def _numeric(where: str, key: str, kind: str, spec: dict) -> Param:
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in (low, high)):
        raise DlforgeError(f"{where}: 'low' and 'high' must be numbers (got {low!r}, {high!r})")
    if low > high:
        raise DlforgeError(f"{where}: low={low} is greater than high={high}. Fix: swap them")
    log, step = bool(spec.get("log", False)), spec.get("step")
    if log and step is not None:
        raise DlforgeError(f"{where}: 'log' and 'step' cannot be combined. Fix: drop one")
    if log and low <= 0:
        raise DlforgeError(f"{where}: a log scale needs low > 0 (got {low})")
    if step is not None and step <= 0:
        raise DlforgeError(f"{where}: step must be positive (got {step})")
    if kind == "int" and not all(float(v).is_integer() for v in (low, high, step or 1)):
        raise DlforgeError(f"{where}: an int parameter needs whole low, high and step")
    unknown = set(spec) - {"type", "low", "high", "log", "step"}
    if unknown:
        raise DlforgeError(f"{where}: unknown field(s) {sorted(unknown)}; use low, high, log, step")
    return Param(key, kind, float(low), float(high), log, None if step is None else float(step))
