"""Fetching a registered package: checked against the digest the registry holds.

The registry is a stand-in with the three calls ``fetch_package`` makes; the
version's artifacts are a local folder, which MLflow downloads like any other.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dlforge.core.errors import DlforgeError
from dlforge.models.package import load_package, package_digest, save_package
from dlforge.models.preprocessing import TextEncoder
from dlforge.models.text import EmbeddingBagClassifier
from dlforge.registry.fetch import fetch_package
from dlforge.registry.register import PACKAGE_TAG


class Registry:
    """One model, version 1 (alias ``champion``), whose artifacts are ``folder``."""

    def __init__(self, folder: Path, digest: str | None):
        self.folder = folder
        self.tags = {PACKAGE_TAG: digest} if digest else {}

    def get_model_version(self, name: str, version: str):
        return SimpleNamespace(version="1", tags=self.tags)

    def get_model_version_by_alias(self, name: str, alias: str):
        return self.get_model_version(name, "1")

    def get_model_version_download_uri(self, name: str, version: str) -> str:
        return str(self.folder)


def make_package(folder: Path, labels: list[str]) -> Path:
    torch.manual_seed(0)
    encoder = TextEncoder(ngrams=1).fit(["play a song", "book a table"])
    arguments = {"vocab_size": len(encoder.vocab), "num_classes": 2, "embed_dim": 4,
                 "hidden_dim": 4}
    net = EmbeddingBagClassifier(**arguments)
    return save_package(folder, net.state_dict(), EmbeddingBagClassifier, arguments, encoder,
                        labels, False, {})


@pytest.fixture
def registered(tmp_path) -> Registry:
    """A registered package, as ``dlforge register`` leaves it."""
    artifacts = make_package(tmp_path / "artifacts" / "model", ["music", "restaurant"])
    return Registry(artifacts.parent, package_digest(artifacts))


def test_a_matching_package_is_fetched_once_and_loads(registered, tmp_path):
    cache = tmp_path / "cache"
    folder, name, version = fetch_package(registered, "models:/toy@champion", cache)
    assert (folder, name, version) == (cache / "toy" / "1", "toy", "1")
    assert load_package(folder).labels == ["music", "restaurant"]
    assert fetch_package(registered, "models:/toy/1", cache)[0] == folder


def test_a_package_changed_after_registration_is_refused_and_not_cached(registered, tmp_path):
    # Re-written with valid SHA256SUMS: only the registry's digest can tell.
    make_package(registered.folder / "model", ["restaurant", "music"])
    cache = tmp_path / "cache"
    with pytest.raises(DlforgeError) as info:
        fetch_package(registered, "models:/toy@champion", cache)
    message = str(info.value)
    assert "models:/toy@champion" in message and "does not match the digest" in message
    assert "Fix: register the model again" in message
    assert not (cache / "toy" / "1").exists()
    assert [p.name for p in (cache / "toy").iterdir()] == []  # no staging left behind


def test_a_version_without_a_package_digest_is_refused(tmp_path):
    artifacts = make_package(tmp_path / "artifacts" / "model", ["music", "restaurant"])
    with pytest.raises(DlforgeError, match=f"has no {PACKAGE_TAG} tag.*Fix: register"):
        fetch_package(Registry(artifacts.parent, None), "models:/toy/1", tmp_path / "cache")


def test_a_stale_cached_copy_is_replaced_by_the_registered_package(registered, tmp_path):
    cache = tmp_path / "cache"
    folder = fetch_package(registered, "models:/toy/1", cache)[0]
    make_package(folder, ["restaurant", "music"])  # e.g. a registry reset reusing version 1
    again = fetch_package(registered, "models:/toy/1", cache)[0]
    assert load_package(again).labels == ["music", "restaurant"]
    assert sorted(p.name for p in (cache / "toy").iterdir()) == ["1"]


@pytest.mark.parametrize("uri", ["models:/toy/1\n", "models:/toy@champion\n"])
def test_a_uri_with_a_trailing_newline_is_not_a_model_uri(registered, tmp_path, uri):
    with pytest.raises(DlforgeError, match="is not a model URI"):
        fetch_package(registered, uri, tmp_path / "cache")
