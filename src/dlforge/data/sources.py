"""Sources that are built, not downloaded: data a package already carries.

A dataset source in ``conf/dataset/`` may name a builder; ``dlforge ingest``
calls it to write the source before committing it, when the source is not
there yet:

    sources:
      - path: ${paths.raw_dir}/digits/part-a
        build: {_target_: dlforge.data.sources.sklearn_digits, part: 0, parts: 2}

A builder writes to a staging folder and publishes it with one rename, so a
killed build leaves nothing half-written behind, and its output is the same
bytes on every run (the commit it becomes is the same commit).
"""

from __future__ import annotations

import os
from pathlib import Path

from dlforge.core.io import staging_dir


def sklearn_digits(out: str | Path, part: int = 0, parts: int = 1) -> Path:
    """scikit-learn's handwritten digits (1,797 8x8 grayscale images, offline) as an
    image folder ``out/<digit>/<index>.png``, keeping every ``parts``-th image from
    ``part`` on: ``parts=2`` gives two disjoint halves to commit one after the other.
    """
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    if not 0 <= part < parts:
        raise ValueError(f"part {part} must be in [0, {parts})")
    out = Path(out)
    digits = load_digits()
    with staging_dir(out.parent) as stage:
        folder = stage / out.name
        for index in range(part, len(digits.target), parts):
            pixels = (digits.images[index] * (255 / 16)).round().astype(np.uint8)  # 0..16 -> 0..255
            label_dir = folder / str(digits.target[index])
            label_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels, mode="L").save(label_dir / f"{index:04d}.png")
        try:
            os.replace(folder, out)
        except OSError:
            if not out.is_dir():
                raise  # else another builder published first, and its folder is the same
    return out
