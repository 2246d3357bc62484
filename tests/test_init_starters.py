"""The projects `dlforge init` writes learn easy data of the kind a new user tries first,
with the starter's own settings: template sentences (text) and coloured shapes (image).

Each test makes a project, puts the data in data/raw/ and runs ingest, snapshot and
train in this process as the stage commands do, from the project's root."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest

from dlforge.stages.project import init
from tests.toy import write_images

INTENTS = {
    "weather": ["what is the weather in {city} {day}", "will it rain in {city} {day}",
                "how cold is it in {city} {day}", "forecast for {city} {day}"],
    "book_flight": ["book a flight to {city} {day}", "i need a plane ticket to {city} {day}",
                    "fly me to {city} {day}", "find flights from {city} to {other}"],
    "play_music": ["play {song} by {artist}", "put on some {genre} by {artist}",
                   "i want to hear {song} please", "play my {genre} playlist {day}"],
    "set_alarm": ["set an alarm for {time} {day}", "wake me up at {time} {day}",
                  "alarm at {time} {day} please", "remind me to wake up at {time} {day}"],
    "order_food": ["order a {dish} from {place}", "i want to order {dish} {day}",
                   "get me a {dish} from {place}", "can you order {dish} for dinner {day}"],
    "timer": ["set a timer for {minutes} minutes", "start a {minutes} minute timer for {dish}",
              "count down {minutes} minutes", "timer {minutes} minutes for the {dish}"],
    "greeting": ["hello {name}", "hi {name} how are you", "good {part} {name}",
                 "hey {name} what's up"],
}
SLOTS = {
    "city": ["paris", "oslo", "lima", "cairo", "tokyo", "rome", "dakar", "perth", "berlin",
             "madrid", "boston", "denver"],
    "day": ["today", "tomorrow", "on monday", "this weekend", "tonight", "on friday"],
    "song": ["yesterday", "hey jude", "thriller", "imagine", "respect", "halo"],
    "artist": ["the beatles", "adele", "queen", "nina simone", "miles davis", "abba"],
    "genre": ["jazz", "rock", "classical", "pop", "blues", "folk"],
    "time": ["7 am", "6:30", "noon", "8 pm", "five thirty", "9 o'clock"],
    "dish": ["pizza", "burger", "salad", "sushi", "curry", "pasta"],
    "place": ["luigi's", "the corner cafe", "the sushi bar", "the burger place"],
    "minutes": ["5", "10", "15", "20", "three", "thirty", "45", "two"],
    "part": ["morning", "evening", "afternoon", "day"],
    "name": ["there", "friend", "buddy", "assistant", "everyone", "robot", "pal", "mate",
             "sam", "alex"],
}
ASKS = ["", "", "please", "can you", "could you", "hey assistant", "i'd like you to"]  # any intent
TAILS = ["", "", "please", "thanks", "right now", "for me"]
SHAPES = {"red_circle": ((220, 40, 40), "circle"), "green_square": ((40, 180, 60), "square"),
          "blue_triangle": ((40, 70, 220), "triangle"), "red_square": ((220, 40, 40), "square")}


def intent_rows(per_intent: int = 60, seed: int = 0) -> str:
    """7 intents x ``per_intent`` rows ``text,label``, each a template with its slots
    filled at random (repeats included, as such data has them)."""
    rng = random.Random(seed)
    rows = []
    for label, templates in INTENTS.items():
        for i in range(per_intent):
            slots = {k: rng.choice(v) for k, v in SLOTS.items()}
            text = templates[i % len(templates)].format(**slots, other=rng.choice(SLOTS["city"]))
            text = f"{rng.choice(ASKS)} {text} {rng.choice(TAILS)}".strip()
            rows.append(f"{text},{label}")
    rng.shuffle(rows)
    return "\n".join(rows) + "\n"


def shape_images(folder: Path, per_class: int = 50, size: int = 32, seed: int = 0) -> Path:
    """``folder/<label>/<i>.png``: RGB images of one filled shape each (its colour jittered)
    at a random place and size on a random light background."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for label, (colour, shape) in SHAPES.items():
        (folder / label).mkdir(parents=True)
        for i in range(per_class):
            image = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(200, 256, 3)))
            r = int(rng.integers(size // 6, size // 3))  # half the shape's width
            x, y = (int(v) for v in rng.integers(r, size - r, 2))
            fill = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in colour)
            draw = ImageDraw.Draw(image)
            if shape == "circle":
                draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
            elif shape == "square":
                draw.rectangle([x - r, y - r, x + r, y + r], fill=fill)
            else:
                draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)
            image.save(folder / label / f"{i}.png")
    return folder


@pytest.fixture
def one_thread():
    """Torch on one thread: on a runner whose cores are busy with other tests, threads
    that wait for each other make these small networks many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_project(project: Path, mlflow_dir: Path, monkeypatch, *overrides: str) -> dict:
    """ingest, snapshot and train the project's experiment, from its root, with its own
    settings (plus ``overrides``); the train stage's metrics."""
    from dlforge.core.config import compose
    from dlforge.stages.data import ingest, snapshot
    from dlforge.stages.train import train

    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project / "src"))  # as every stage command does
    common = [f"experiment={project.name}", f"paths.mlflow_dir={mlflow_dir}"]
    ingest(compose("ingest", common))
    snapshot(compose("snapshot", common))
    return train(compose("train", [*common, "trainer.enable_progress_bar=false",
                                   "datamodule.num_workers=0", *overrides]))


def recorded_channels(project: Path) -> int:
    package = project / "outputs" / project.name / "train" / "model"
    return json.loads((package / "preprocessing.json").read_text())["channels"]


@pytest.mark.slow
def test_the_text_starter_learns_template_sentences(tmp_path, mlflow_dir, monkeypatch,
                                                    one_thread):
    project = Path(init(tmp_path / "easy_intents")["project"])
    (project / "data/raw/easy_intents.csv").write_text(intent_rows())
    metrics = train_project(project, mlflow_dir, monkeypatch)
    assert metrics["test/acc"] >= 0.9, metrics


@pytest.mark.slow
def test_the_image_starter_learns_coloured_shapes_and_reads_them_as_rgb(
        tmp_path, mlflow_dir, monkeypatch, one_thread, caplog):
    project = Path(init(tmp_path / "easy_shapes", kind="image")["project"])
    shape_images(project / "data/raw/easy_shapes")
    with caplog.at_level(logging.INFO, logger="dlforge.models.preprocessing"):
        metrics = train_project(project, mlflow_dir, monkeypatch)
    assert metrics["test/acc"] >= 0.9, metrics
    assert "all in colour: read as RGB, 3 channels <model.encoder.channels=null>" in caplog.text
    assert recorded_channels(project) == 3


@pytest.mark.slow
def test_the_image_starter_reads_grayscale_images_as_one_channel(tmp_path, mlflow_dir,
                                                                 monkeypatch, one_thread):
    project = Path(init(tmp_path / "gray_shapes", kind="image")["project"])
    write_images(project / "data/raw/gray_shapes", per_class=12)  # 8x8, mode L
    train_project(project, mlflow_dir, monkeypatch, "trainer.max_epochs=1")
    assert recorded_channels(project) == 1
