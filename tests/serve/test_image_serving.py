"""An image classifier end to end: trained, registered, served from base64 images."""

from __future__ import annotations

import base64
import json

from dlforge.data import SnapshotStore, Store
from tests.serve.conftest import running, server_config
from tests.train.conftest import write_images


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
        for inputs, words in [(["not base64!"], "inputs.0: not base64-encoded"),
                              ([pictures[0], b64(b"GIF89a broken")], "inputs.1: not a readable "
                                                                     "image")]:
            refused = client.post("/predict", json={"inputs": inputs})
            assert (refused.status_code, words in refused.text) == (422, True), refused.text
        assert client.post("/predict", json={"inputs": pictures[:1]}).status_code == 200
