"""Classifiers over pretrained Hugging Face transformers backbones (``model=hf_text``,
``model=hf_image``), behind the optional extra ``pip install 'dlforge[transformers]'``.

A backbone is named by ``model.net.backbone``: a folder written by
``save_pretrained`` or (online) a hub id. Training loads its pretrained weights;
the model package records the backbone's config instead of its name
(:meth:`PretrainedClassifier.package_arguments`), so loading a package rebuilds
the network from that config (``AutoModel.from_config``) and reads the
fine-tuned weights from ``weights.safetensors``: nothing is fetched at load time.

Both nets take ``freeze`` (the lowest stages kept fixed: the embeddings, then
blocks) and ``backbone_lr_factor`` (the backbone learns at the optimizer's rate
times this, the new head at the optimizer's rate; see :meth:`param_groups`).

transformers is imported inside functions only: importing this module (as
``dlforge train`` does to check ``model.net._target_``) needs torch alone.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from dlforge.core.errors import DlforgeError

log = logging.getLogger(__name__)

INSTALL = "Fix: pip install 'dlforge[transformers]'"
# Any one of these in a folder is a saved tokenizer (fast, WordPiece, BPE, SentencePiece).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                   "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
PROCESSOR_FILE = "preprocessor_config.json"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")  # "name" or "org/name"


def require_transformers():
    """The transformers module, or an error that says how to install it."""
    try:
        import transformers
    except ImportError:
        raise DlforgeError("pretrained backbones (model=hf_text, model=hf_image) need the "
                           f"transformers package, which is not installed. {INSTALL}") from None
    return transformers


def locate(name: str, key: str) -> str:
    """``name`` as transformers should load it: an existing folder, or a hub id.

    Raises:
        DlforgeError: naming ``key`` when ``name`` is neither an existing folder nor
            shaped like a hub id (a path that does not exist).
    """
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.exists() or not HUB_ID.fullmatch(str(name)):
        raise DlforgeError(f"{key}={name}: no such folder. Fix: point model.net.backbone "
                           "(which the encoder follows) at a folder written by save_pretrained "
                           "or at a Hugging Face hub id such as bert-base-uncased")
    return str(name)


def load_tokenizer(name: str, key: str, offline: bool = False):
    """The tokenizer saved in the folder (or hub model) ``name``.

    Raises:
        DlforgeError: a folder without tokenizer files (naming it and the fix), a
            path that does not exist, or a hub id that cannot be loaded.
    """
    transformers = require_transformers()
    source = locate(name, key)
    if Path(source).is_dir() and not any((Path(source) / f).is_file() for f in TOKENIZER_FILES):
        raise DlforgeError(f"{key}={name}: the folder {source} holds no tokenizer (none of "
                           f"{', '.join(TOKENIZER_FILES)}). Fix: save the backbone's tokenizer "
                           f"there, e.g. AutoTokenizer.from_pretrained('<hub id>')"
                           f".save_pretrained('{source}')")
    try:
        return transformers.AutoTokenizer.from_pretrained(source, local_files_only=offline)
    except (OSError, ValueError) as err:
        raise DlforgeError(f"{key}={name}: the tokenizer does not load ({err}). Fix: point "
                           f"{key} at a folder written by save_pretrained or a hub id "
                           "reachable from here") from None


def processor_settings(name: str, key: str) -> tuple[tuple[int, int], list, list]:
    """``(height, width)``, mean and std of the image processor saved in ``name``.

    Images are resized straight to the processor's crop size when it crops, else to
    its size (a ``shortest_edge`` gives a square); pixels are scaled to [0, 1] and
    normalised with its mean and std.

    Raises:
        DlforgeError: a folder without ``preprocessor_config.json`` (naming it and the
            fix), a path that does not exist, or settings without a size.
    """
    require_transformers()
    source = locate(name, key)
    if Path(source).is_dir():
        file = Path(source) / PROCESSOR_FILE
        if not file.is_file():
            raise DlforgeError(f"{key}={name}: the folder {source} has no {PROCESSOR_FILE} "
                               "(the image processor's size, mean and std). Fix: save the "
                               "backbone's processor there, e.g. AutoImageProcessor"
                               f".from_pretrained('<hub id>').save_pretrained('{source}')")
        settings = json.loads(file.read_text())
    else:
        from transformers.image_processing_utils import ImageProcessingMixin

        try:
            settings, _ = ImageProcessingMixin.get_image_processor_dict(source)
        except OSError as err:
            raise DlforgeError(f"{key}={name}: the image processor does not load ({err}). "
                               f"Fix: point {key} at a folder with {PROCESSOR_FILE} or a hub "
                               "id reachable from here") from None
    normalise = settings.get("do_normalize", True)
    mean = settings.get("image_mean", [0.5] * 3) if normalise else [0.0] * 3
    std = settings.get("image_std", [0.5] * 3) if normalise else [1.0] * 3
    return _image_size(settings, f"{key}={name}"), [float(m) for m in mean], \
        [float(s) for s in std]


def _image_size(settings: dict, where: str) -> tuple[int, int]:
    """``(height, width)`` of an image processor's output: its crop when it crops."""
    size = settings.get("crop_size") if settings.get("do_center_crop") else None
    size = size or settings.get("size")
    if isinstance(size, int):
        size = {"shortest_edge": size}
    if isinstance(size, Mapping) and {"height", "width"} <= size.keys():
        return int(size["height"]), int(size["width"])
    if isinstance(size, Mapping) and "shortest_edge" in size:
        return (int(size["shortest_edge"]),) * 2
    raise DlforgeError(f"{where}: the image processor gives no size ({size!r}). Fix: use a "
                       "processor with size {height, width} or {shortest_edge}")


class PretrainedClassifier(nn.Module):
    """A transformers backbone (``AutoModel``) and a new linear head.

    Args:
        num_classes: C.
        backbone: a folder written by ``save_pretrained`` or a hub id (training: the
            pretrained weights are loaded), or the backbone's config as a dict (a
            package: built from it, the weights come from the package).
        freeze: the backbone's lowest stages kept fixed, counting the embeddings
            (everything before the first block) as stage 1 and each block as the
            next: 0 trains everything, 1 freezes the embeddings, N the embeddings and
            N - 1 blocks; -1 freezes the whole backbone (only the head learns).
        backbone_lr_factor: the backbone learns at the optimizer's rate times this.
        dropout: before the head.
    """

    def __init__(self, num_classes: int, backbone: str | dict, freeze: int = 0,
                 backbone_lr_factor: float = 1.0, dropout: float = 0.1):
        super().__init__()
        self.backbone = build_backbone(backbone)
        self.backbone_lr_factor = backbone_lr_factor
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.feature_size(self.backbone.config), num_classes)
        freeze_stages(self.backbone, freeze)

    @staticmethod
    def feature_size(config) -> int:
        """Width of the features the head reads (CNNs: the last stage's channels)."""
        sizes = getattr(config, "hidden_sizes", None)
        return int(sizes[-1]) if sizes else int(config.hidden_size)

    def param_groups(self) -> list[dict]:
        """The optimizer's parameter groups: the head's at the optimizer's learning rate,
        the backbone's trainable ones at ``lr_factor`` times it (frozen ones in none);
        :class:`dlforge.train.module.Classifier` applies ``lr_factor``."""
        head = [p for n, p in self.named_parameters()
                if not n.startswith("backbone.") and p.requires_grad]
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        groups = [{"params": head}]
        if backbone:
            groups.append({"params": backbone, "lr_factor": self.backbone_lr_factor})
        return groups

    @classmethod
    def package_arguments(cls, arguments: dict) -> dict:
        """The arguments that rebuild this net offline: the backbone's folder or hub id
        replaced by its config (what ``model.json`` records; see
        :func:`dlforge.models.package.save_package`)."""
        backbone = arguments["backbone"]
        if isinstance(backbone, Mapping):
            return arguments
        transformers = require_transformers()
        config = transformers.AutoConfig.from_pretrained(locate(backbone, "model.net.backbone"))
        spec = config.to_dict()
        spec.pop("_name_or_path", None)  # a path on the training machine, not the model
        return {**arguments, "backbone": spec}


def build_backbone(backbone: str | Mapping) -> nn.Module:
    """``AutoModel`` from a folder or hub id (pretrained weights) or a config dict (no
    weights: a package loads its own), in float32 whatever dtype it was saved in, and in
    training mode like any new module (``from_pretrained`` returns it in eval mode)."""
    transformers = require_transformers()
    if isinstance(backbone, Mapping):
        spec = dict(backbone)
        config = transformers.AutoConfig.for_model(spec.pop("model_type"), **spec)
        return transformers.AutoModel.from_config(config).float().train()
    source = locate(backbone, "model.net.backbone")
    try:
        return transformers.AutoModel.from_pretrained(source).float().train()
    except (OSError, ValueError) as err:
        raise DlforgeError(f"model.net.backbone={backbone}: the backbone does not load "
                           f"({err}). Fix: point model.net.backbone at a folder written by "
                           "save_pretrained or a hub id reachable from here") from None


def freeze_stages(backbone: nn.Module, stages: int) -> None:
    """Stop gradients of the backbone's lowest ``stages`` (see :class:`PretrainedClassifier`).

    The blocks are the backbone's ``nn.ModuleList`` that holds the most parameters
    (BERT's ``encoder.layer``, ViT's ``layers``, ResNet's ``encoder.stages``); what is
    registered before them are the embeddings.
    """
    if stages == 0:
        return
    if stages == -1:
        backbone.requires_grad_(False)
        return
    lists = [(sum(p.numel() for p in m.parameters()), name) for name, m in
             backbone.named_modules() if isinstance(m, nn.ModuleList) and len(m)]
    kind = type(backbone).__name__
    if not lists:
        raise DlforgeError(f"model.net.freeze={stages}: {kind} has no list of blocks to count "
                           "stages in. Fix: set model.net.freeze to 0 (train all) or -1 (the "
                           "head only)")
    blocks = max(lists)[1]
    count = len(backbone.get_submodule(blocks))
    if not 0 < stages <= count + 1:
        raise DlforgeError(f"model.net.freeze={stages}: {kind} has {count + 1} stages (the "
                           f"embeddings and {count} blocks). Fix: set model.net.freeze between "
                           f"-1 and {count + 1}")
    stage = 1  # the embeddings, until the first block
    for name, parameter in backbone.named_parameters():
        if name.startswith(f"{blocks}."):
            stage = int(name[len(blocks) + 1:].split(".")[0]) + 2
        elif stage > 1:
            stage = count + 2  # after the blocks: final norm, pooler
        if stage <= stages:
            parameter.requires_grad_(False)
    log.info("froze %s's embeddings and %d of %d blocks <model.net.freeze=%d>", kind,
             stages - 1, count, stages)


class PretrainedTextClassifier(PretrainedClassifier):
    """A transformers text encoder (BERT, RoBERTa, DistilBERT, ...), pooled, and a head.

    Input ``(B, 2, T)``: token ids and attention mask, as
    :class:`dlforge.models.preprocessing.TokenizerEncoder` collates them; output
    logits ``(B, C)``.

    Args:
        vocab_size: the tokenizer's size (the encoder's input); at most the backbone's.
        pooling: ``mean`` of the unmasked last hidden states, or ``cls`` (the first
            token's).
    """

    def __init__(self, num_classes: int, vocab_size: int, backbone: str | dict,
                 freeze: int = 0, backbone_lr_factor: float = 1.0, pooling: str = "mean",
                 dropout: float = 0.1):
        if pooling not in ("mean", "cls"):
            raise DlforgeError(f"model.net.pooling={pooling}: not mean or cls. Fix: set "
                               "model.net.pooling=mean or model.net.pooling=cls")
        super().__init__(num_classes, backbone, freeze, backbone_lr_factor, dropout)
        embedded = self.backbone.config.vocab_size
        if vocab_size > embedded:
            raise DlforgeError(f"model.net.backbone: the tokenizer has {vocab_size} tokens, "
                               f"the backbone embeds {embedded}. Fix: use the tokenizer saved "
                               "with the backbone (model.encoder.tokenizer)")
        self.pooling = pooling

    def forward(self, batch: torch.Tensor) -> torch.Tensor:  # (B, 2, T) -> (B, C)
        ids, mask = batch[:, 0], batch[:, 1]
        hidden = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, H)
        if self.pooling == "cls":
            features = hidden[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            features = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(self.dropout(features))


class PretrainedImageClassifier(PretrainedClassifier):
    """A transformers vision backbone (ViT, ResNet, ConvNeXt, ...) and a head.

    Input ``(B, channels, H, W)`` normalised images; output logits ``(B, C)``. The
    head reads the backbone's pooled output, or the mean of its last hidden state.

    Args:
        channels: the encoder's channels; the backbone's ``num_channels``.
    """

    def __init__(self, num_classes: int, channels: int, backbone: str | dict,
                 freeze: int = 0, backbone_lr_factor: float = 1.0, dropout: float = 0.1):
        super().__init__(num_classes, backbone, freeze, backbone_lr_factor, dropout)
        expected = getattr(self.backbone.config, "num_channels", channels)
        if channels != expected:
            raise DlforgeError(f"model.encoder.channels={channels}: the backbone takes "
                               f"{expected} channels. Fix: set model.encoder.channels="
                               f"{expected}")

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        out = self.backbone(pixel_values=images)
        features = getattr(out, "pooler_output", None)
        if features is None:  # (B, T, H) tokens or (B, C, h, w) maps
            hidden = out.last_hidden_state
            features = hidden.mean(dim=1) if hidden.dim() == 3 else hidden.mean(dim=(2, 3))
        return self.head(self.dropout(features.flatten(1)))  # CNN pools are (B, C, 1, 1)
