"""The input section of the report for text and image models, and its plot."""

from __future__ import annotations

from collections import Counter

import pytest

from dlforge.monitor.compare import inputs
from dlforge.monitor.plots import plot_inputs
from dlforge.monitor.reference import Reference
from dlforge.monitor.traffic import Traffic


def images(means: list[float], sizes: list[tuple[int, int]], cls=Traffic):
    data = cls(snapshot="s", examples=len(means), labels=Counter()) if cls is Reference \
        else cls(summarised=len(means))
    data.inputs["mean"] = means
    data.inputs["height"] = [float(h) for h, _ in sizes]
    data.sizes = sizes
    return data


def test_image_inputs_of_another_size_and_brightness():
    reference = images([0.2, 0.3, 0.4, 0.5] * 25, [(8, 8)] * 90 + [(16, 16)] * 10, Reference)
    same = inputs("image", reference, images([0.2, 0.3, 0.4, 0.5] * 10, [(8, 8)] * 40), bins=4)
    assert same["size"] == {"reference": [8, 8], "reference_other_share": 0.1,
                            "live_other_share": 0.0, "increase": -0.1}
    assert same["intensity_psi"] < 0.05
    moved = inputs("image", reference, images([0.9] * 40, [(32, 32)] * 40), bins=4)
    assert moved["size"]["increase"] == pytest.approx(0.9)
    assert moved["intensity_psi"] > 1
    assert moved["means"]["mean"] == {"reference": 0.35, "live": 0.9}


def test_text_inputs_token_counts_and_oov():
    reference, live = Reference("s", 3, Counter()), Traffic(summarised=2)
    reference.inputs |= {"tokens": [4.0, 5.0, 6.0], "oov": [0.0, 0.0, 0.1]}
    live.inputs |= {"tokens": [20.0, 30.0], "oov": [0.5, 0.7]}
    section = inputs("text", reference, live, bins=3)
    assert section["oov"] == {"reference": 0.033333, "live": 0.6, "increase": 0.566667}
    assert section["tokens_psi"] > 0.2 and section["summarised"] == {"reference": 3, "live": 2}


@pytest.mark.parametrize("kind", ["text", "image"])
def test_input_plots_are_written_also_without_traffic(tmp_path, kind):
    reference = images([0.2, 0.4], [(8, 8), (8, 8)], Reference)
    reference.inputs |= {"tokens": [3.0, 4.0], "oov": [0.0, 0.5]}
    plot_inputs(tmp_path / "inputs.png", kind, reference, Traffic())
    assert (tmp_path / "inputs.png").stat().st_size > 0
