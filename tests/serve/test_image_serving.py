"""An image classifier end to end: trained, registered, served from base64 images."""

from __future__ import annotations

import base64
import json
import time

from dlforge.data import SnapshotStore, Store
from tests.helpers import running
from tests.toy import png_header, server_config, write_images


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_an_image_model_answers_base64_images_and_refuses_what_does_not_decode(project):
    images = write_images(project.root / "images")
    store = Store(project.root / "data/store")
    store.create("shapes", "image_class", images)
    ref = SnapshotStore(project.root / "data/snapshots", store).build("shapes")
    (project.root / "outputs/intent/snapshot.json").write_text(
        json.dumps({"dataset": "shapes", "version": ref.version, "path": str(ref.path)}))
    record = project.release("model=small_cnn", "model.net.width=8", "trainer.max_epochs=4")
    assert record["champion"] == "1"

    with running(server_config(project)) as client:
        pictures = [b64((images / label / "0.png").read_bytes()) for label in ("cols", "rows")]
        answer = client.post("/predict", json={"inputs": pictures, "top_k": 3})
        assert answer.status_code == 200, answer.text
        assert [p["label"] for p in answer.json()["predictions"]] == ["cols", "rows"]
        assert len(answer.json()["predictions"][0]["top_k"]) == 3
        for inputs, status, words in [
                (["not base64!"], 422, "inputs.0: not base64-encoded"),
                ([pictures[0], b64(b"GIF89a broken")], 422, "inputs.1: not a readable image"),
                ([b64(png_header(5000, 4000))], 413, "more than max_image_pixels"),
                ([b64(png_header(20000, 20000))], 413, "more than max_image_pixels"),
                ([b64(png_header(8, 8))], 422, "inputs.0: the image data is damaged")]:
            sent = time.monotonic()
            refused = client.post("/predict", json={"inputs": inputs})
            assert (refused.status_code, words in refused.text) == (status, True), refused.text
            assert "object at 0x" not in refused.text  # no Python object in a message
            assert time.monotonic() - sent < 5  # refused from the header, never decoded
        assert client.post("/predict", json={"inputs": pictures[:1]}).status_code == 200
