"""Search spaces as data: ``hpo.space`` in the config, validated before any trial.

    space:
      optimizer.lr: {type: float, low: 1e-4, high: 1e-2, log: true}
      model.net.dropout: {type: float, low: 0.0, high: 0.5, step: 0.1}
      model.net.hidden_dim: {type: categorical, choices: [128, 256]}
      datamodule.batch_size: null          # left out of the search

Every key is a dotted path into the training config; a sampled trial becomes
Hydra overrides of those paths, so a trial trains exactly like ``dlforge train``
with those overrides. Hydra merges the space from three places: conf/hpo/default.yaml
(keys every model has), the model's config (the keys of its own network) and the
experiment; a null entry, which a merge cannot delete, leaves a key out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dlforge.core.config import has_key
from dlforge.core.errors import DlforgeError


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
        if isinstance(value, float):  # 0.30000000000000004 -> 0.3
            return f"{self.key}={value:.10g}"
        return f"{self.key}={'null' if value is None else value}"


def parse_space(space: DictConfig | dict, train_cfg: DictConfig) -> list[Param]:
    """Validate ``hpo.space`` against the training config; null entries are left out.

    Raises:
        DlforgeError: naming ``hpo.space.<key>`` and what to change.
    """
    entries = OmegaConf.to_container(space, resolve=True) if isinstance(space, DictConfig) \
        else dict(space)
    params = [_parse(key, spec, train_cfg) for key, spec in entries.items()]
    params = [param for param in params if param is not None]
    if not params:
        raise DlforgeError("hpo.space is empty. Fix: declare at least one parameter, e.g. "
                           "optimizer.lr: {type: float, low: 1e-4, high: 1e-2, log: true}")
    return params


def _parse(key: str, spec: Any, train_cfg: DictConfig) -> Param | None:
    """The parameter of ``hpo.space.<key>``; None for a key left out (``null``)."""
    where = f"hpo.space.{key}"
    if not has_key(train_cfg, key):
        raise DlforgeError(f"{where}: '{key}' is not a key of the training config (the space "
                           "comes from conf/hpo/, the model's config and the experiment). Fix: "
                           "use a dotted path that `dlforge train experiment=... --cfg job` "
                           f"shows, or leave it out: `hpo: {{space: {{{key}: null}}}}` in the "
                           "experiment")
    if isinstance(OmegaConf.select(train_cfg, key), DictConfig):
        raise DlforgeError(f"{where}: '{key}' is a config section, not a value. Fix: search a "
                           f"value inside it (e.g. {key}.<field>)")
    if spec is None:
        return None
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


def grid_space(params: list[Param]) -> dict[str, list]:
    """Every value of each parameter, for Optuna's GridSampler.

    Raises:
        DlforgeError: for a continuous parameter (no step), which has no grid.
    """
    grid = {}
    for p in params:
        if p.type == "categorical":
            grid[p.key] = list(p.choices)
        elif p.type == "int":
            grid[p.key] = list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
        elif p.step is not None:
            count = int(round((p.high - p.low) / p.step)) + 1
            grid[p.key] = [round(p.low + i * p.step, 12) for i in range(count)]
        else:
            raise DlforgeError(f"hpo.space.{p.key}: the grid sampler needs a step or choices "
                               "for every parameter. Fix: add 'step' or use hpo/sampler=tpe")
    return grid


def check_enqueued(entries: list, params: list[Param]) -> list[dict]:
    """``hpo.enqueue``: parameter sets to try first (say, the current defaults).

    Raises:
        DlforgeError: naming the entry and key that is not in the space or out of range.
    """
    by_key = {p.key: p for p in params}
    checked = []
    for index, entry in enumerate(entries):
        where = f"hpo.enqueue[{index}]"
        if not isinstance(entry, dict):
            raise DlforgeError(f"{where}: expected a mapping of space keys to values")
        for key, value in entry.items():
            param = by_key.get(key)
            if param is None:
                raise DlforgeError(f"{where}.{key}: not a key of hpo.space ({sorted(by_key)})")
            if param.type == "categorical":
                ok = value in param.choices
            else:
                ok = isinstance(value, int | float) and param.low <= value <= param.high
            if not ok:
                allowed = list(param.choices) if param.type == "categorical" \
                    else f"[{param.low}, {param.high}]"
                raise DlforgeError(f"{where}.{key}={value!r} is outside the space: {allowed}")
        checked.append(dict(entry))
    return checked
