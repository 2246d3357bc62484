"""Two versions of one user project: packages of the same class path whose carried
code differs, built without training (one package, copied and edited)."""

from __future__ import annotations

import shutil
from importlib import import_module
from pathlib import Path

import torch

from dlforge.models.package import save_package
from dlforge.models.preprocessing import TextEncoder
from tests.user_models import NETS, project_name, resign, write_user_code

TEXTS = ["play a song", "book a table", "play loud music", "a table for two"]
LABELS = ["music", "restaurant"]

BIAS = '''import torch

from .layers import FAVOURED  # a relative import: this version's own layers


def favour(logits: torch.Tensor) -> torch.Tensor:  # (B, C) -> (B, C)
    bias = torch.zeros(logits.shape[1])
    bias[FAVOURED] = 10.0
    return logits + bias
'''


def versions_of_one_project(tmp_path: Path, monkeypatch) -> tuple[str, Path, dict[int, Path]]:
    """The project ``<name>`` (``tmp_path/project``, its ``src/`` on sys.path and its
    ``<name>.nets`` imported, as training leaves it) and packages of two versions of
    its ``<name>.nets:BagNet``: version 1's code favours class 0 ("music"), version
    2's class 1 ("restaurant"); the weights are the same.

    Returns:
        (name, project folder, {version: package folder}).
    """
    name = project_name(tmp_path)
    project = tmp_path / "project"
    monkeypatch.syspath_prepend(str(write_user_code(project, name)))
    net_class = import_module(f"{name}.nets").BagNet
    torch.manual_seed(0)
    encoder = TextEncoder().fit(TEXTS)
    arguments = {"vocab_size": len(encoder.vocab), "num_classes": 2, "embed_dim": 4}
    net = net_class(**arguments)
    first = save_package(tmp_path / "v1", net.state_dict(), net_class, arguments, encoder,
                         LABELS, False, {})
    folders = {1: first, 2: Path(shutil.copytree(first, tmp_path / "v2"))}
    for version, folder in folders.items():
        favour_class(folder, name, version - 1)
    return name, project, folders


def favour_class(folder: Path, name: str, index: int) -> None:
    """Edit the package's carried code so that its network favours class ``index``: the
    change sits in modules that ``nets.py`` reaches by an absolute import
    (``<name>.bias``) which reaches another by a relative one (``.layers``)."""
    code = folder / "code" / name
    nets = NETS.format(name=name)
    nets = nets.replace(f"from {name}.layers import mean_pool\n",
                        f"from {name}.bias import favour\nfrom {name}.layers import mean_pool\n")
    nets = nets.replace("return self.head(mean_pool(self.embed(ids), ids != 0))",
                        "return favour(self.head(mean_pool(self.embed(ids), ids != 0)))")
    (code / "nets.py").write_text(nets)
    layers = code / "layers.py"
    layers.write_text(layers.read_text() + f"\nFAVOURED = {index}\n")
    (code / "bias.py").write_text(BIAS)
    sums = folder / "SHA256SUMS"
    sums.write_text(sums.read_text() + f"{'0' * 64}  code/{name}/bias.py\n")
    resign(folder)
