"""``best.yaml``: a sweep's best parameters, as Hydra overrides of the training config.

    # best trial 7 of study intent-3fa2c1d0: val/acc=0.912 (maximize)
    - optimizer.lr=0.0031
    - model.net.hidden_dim=256

``dlforge train`` applies them when the experiment enables the sweep
(``hpo.enabled``); an override given on the command line wins
(:func:`dlforge.stages.config.apply_best`).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from dlforge.core.io import write_text_atomic


def write_best(path: Path, overrides: list[str], header: str) -> None:
    """Write atomically: a killed sweep never leaves half a file for train to read."""
    write_text_atomic(path, f"# {header}\n# Applied by `dlforge train` when hpo.enabled is "
                      "true.\n" + yaml.safe_dump(overrides, default_flow_style=False))
