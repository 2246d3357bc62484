"""Benchmark: fine-tuning a small transformer text classifier (model=hf_text), samples/s.

Usage:
    python benchmarks/bench_finetune.py [--device all|cpu|cuda] [--steps N] [--batch-size B]
                                        [--max-length T] [--warmup W] [--threads K] [--amp]

Builds a BERT-mini sized backbone from a config (hidden 256, 4 layers, 4 heads,
random init: nothing is downloaded) and a WordPiece tokenizer trained on the fly
on synthetic sentences (4 classes, 8-48 words each), saves both with
``save_pretrained`` in a temp folder, and fine-tunes dlforge's own pieces on them:
:class:`~dlforge.models.preprocessing.TokenizerEncoder` (encode, collate ``(B, 2, T)``)
and :class:`~dlforge.models.pretrained.PretrainedTextClassifier`, with the optimizer
built as training builds it (AdamW, the backbone at ``backbone_lr_factor`` of the
rate) and gradient clipping, as a plain loop (no Lightning, no MLflow): the figure
is the model's own training throughput.

samples/s = batch size x timed steps / their wall time, after ``--warmup`` untimed
steps (allocator, kernels). Each device in ``--device`` is measured in turn
(``all``: the CPU, and CUDA where available). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

CLASSES = 4
WORDS_PER_CLASS = 60
SHARED_WORDS = 400


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="all", help="all, cpu, cuda or cuda:N")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64, help="tokens per input")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    return parser.parse_args(argv)


def sentences(count: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """Synthetic labelled sentences: class words mixed with shared filler words."""
    rng = random.Random(seed)
    own = [[f"c{c}w{i}" for i in range(WORDS_PER_CLASS)] for c in range(CLASSES)]
    shared = [f"s{i}" for i in range(SHARED_WORDS)]
    texts, labels = [], []
    for _ in range(count):
        label = rng.randrange(CLASSES)
        words = [rng.choice(own[label] if rng.random() < 0.3 else shared)
                 for _ in range(rng.randint(8, 48))]
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def save_backbone(folder: Path, texts: list[str]) -> Path:
    """A BERT-mini sized model (random init) and a WordPiece tokenizer, as a hub folder."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=2000,
                                                                   special_tokens=special))
    cls, sep = wordpiece.token_to_id("[CLS]"), wordpiece.token_to_id("[SEP]")
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer = BertTokenizerFast(tokenizer_object=wordpiece)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=256, num_hidden_layers=4,
                        num_attention_heads=4, intermediate_size=1024,
                        max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def devices(choice: str) -> list[str]:
    import torch

    if choice == "all":
        return ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {choice}: no CUDA device here")
    return [choice]


def measure(device: str, backbone: Path, texts: list[str], labels: list[int],
            args: argparse.Namespace) -> dict:
    """Train ``--warmup`` + ``--steps`` steps on ``device``; samples/s of the timed ones."""
    import torch

    from dlforge.models.preprocessing import TokenizerEncoder
    from dlforge.models.pretrained import PretrainedTextClassifier
    from dlforge.train.module import Classifier

    torch.manual_seed(0)
    encoder = TokenizerEncoder(str(backbone), max_length=args.max_length).fit(texts)
    encoded = [encoder.encode(t) for t in texts]
    net = PretrainedTextClassifier(CLASSES, backbone=str(backbone), backbone_lr_factor=0.1,
                                   **encoder.model_inputs).to(device)
    module = Classifier(net, CLASSES, False,
                        lambda params: torch.optim.AdamW(params, lr=3e-4, weight_decay=0.01))
    optimizer = module.configure_optimizers()
    loss_fn = torch.nn.CrossEntropyLoss()
    cuda = device.startswith("cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and args.amp)
    net.train()

    def step(index: int) -> torch.Tensor:
        start = (index * args.batch_size) % (len(texts) - args.batch_size)
        batch = encoder.collate(encoded[start:start + args.batch_size]).to(device)
        targets = torch.tensor(labels[start:start + args.batch_size], device=device)
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(net(batch), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        return loss.detach()

    for index in range(args.warmup):
        step(index)
    if cuda:
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for index in range(args.warmup, args.warmup + args.steps):
        loss = step(index)
    last_loss = float(loss)  # waits for the device
    seconds = time.perf_counter() - started
    return {"device": device, "name": torch.cuda.get_device_name(device) if cuda else "cpu",
            "threads": torch.get_num_threads(), "samples_per_s": round(
                args.batch_size * args.steps / seconds, 1),
            "step_ms": round(1000 * seconds / args.steps, 1), "last_loss": round(last_loss, 4),
            "parameters": sum(p.numel() for p in net.parameters())}


def main(argv: list[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    needed = args.batch_size * (args.warmup + args.steps + 1)
    texts, labels = sentences(max(needed, 512))
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp:
        backbone = save_backbone(Path(tmp) / "bert-mini", texts)
        results = [measure(d, backbone, texts, labels, args) for d in devices(args.device)]
    print(f"{'device':<8} {'samples/s':>10} {'step ms':>9} {'threads':>8}  name")
    for r in results:
        print(f"{r['device']:<8} {r['samples_per_s']:>10} {r['step_ms']:>9} {r['threads']:>8}"
              f"  {r['name']}")
    settings = {k: getattr(args, k) for k in ("steps", "warmup", "batch_size", "max_length",
                                              "amp")}
    print(json.dumps({"benchmark": "bench_finetune", **settings, "results": results}))


if __name__ == "__main__":
    main()
