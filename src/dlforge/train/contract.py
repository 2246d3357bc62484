"""The model contract, checked before any training: every ``_target_`` imports, and
``model.net`` is a ``torch.nn.Module`` built with ``num_classes`` plus the encoder's
inputs whose forward maps a batch to logits ``(B, C)``.

    check_targets(cfg, snapshot)   what ``dlforge train`` and ``dlforge sweep`` call
                                   first; each failure names the key and the fix
    check_model(cfg, snapshot)     one forward pass on a few train examples
"""

from __future__ import annotations

from omegaconf import DictConfig

from dlforge.core.errors import DlforgeError
from dlforge.data.snapshot import Snapshot


def check_targets(cfg: DictConfig, snapshot: Snapshot | None = None) -> None:
    """Fail before any work when a _target_ does not import (e.g. a typo in an override)
    or, given the ``snapshot`` to train on, when ``model.net`` breaks the model
    contract (:func:`check_model`)."""
    from hydra.utils import get_object

    groups = {"model.net": cfg.model.net, "model.encoder": cfg.model.encoder,
              "optimizer": cfg.optimizer, "scheduler": cfg.get("scheduler")}
    for key, node in groups.items():
        if node is None:
            continue
        try:
            get_object(node._target_)
        except Exception:
            raise DlforgeError(f"{key}._target_={node._target_} cannot be imported. Fix: pick a "
                               f"config from conf/{key.split('.')[0]}/ or correct the path") \
                from None
    if snapshot is not None:
        check_model(cfg, snapshot)


CHECK_EXAMPLES = 4  # train examples in the one batch the model contract is checked on
CONTRACT = ("the model contract: a torch.nn.Module built with num_classes, the encoder's "
            "inputs and model.net's keys, whose forward maps a batch to logits (B, C)")


def check_model(cfg: DictConfig, snapshot: Snapshot) -> None:
    """Raise naming the key and the fix when ``model.net`` is not a ``torch.nn.Module``
    class, rejects its arguments, or does not map a batch to logits ``(B, C)``.

    Cheap: the encoder is fitted on the first train examples, which are encoded and
    collated as training does, and go through one forward pass in eval mode without
    gradients. Training's random streams are left as they were.
    """
    import torch
    from hydra.utils import get_object, instantiate

    from dlforge.models.source import class_path

    target = cfg.model.net._target_
    built = get_object(target)
    if not (isinstance(built, type) and issubclass(built, torch.nn.Module)):
        raise DlforgeError(f"model.net._target_={target} is {type(built).__name__} "
                           f"{built!r}, not a torch.nn.Module subclass. Fix: name a class that "
                           f"subclasses torch.nn.Module ({CONTRACT})")
    class_path(built)  # one a package can name again
    inputs = snapshot.inputs("train")[:CHECK_EXAMPLES]
    if not inputs:
        return  # nothing to run; the datamodule reports an empty split
    encoder = instantiate(cfg.model.encoder).fit(inputs)
    given = {"num_classes": len(snapshot.labels), **encoder.model_inputs}
    batch = encoder.collate([encoder.encode(x) for x in inputs])
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        net = _build_net(cfg.model.net, built, given)
        net.eval()
        try:
            logits = net(batch)
        except Exception as err:
            raise DlforgeError(f"model.net._target_={target}: the forward pass on a batch of "
                               f"{len(inputs)} train examples ({_shape(batch)}) raised "
                               f"{type(err).__name__}: {err}. Fix: make forward take the "
                               f"encoder's batch ({CONTRACT})") from None
    expected = (len(inputs), given["num_classes"])
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
        raise DlforgeError(f"model.net._target_={target}: the forward pass on a batch of "
                           f"{len(inputs)} train examples ({_shape(batch)}) returned "
                           f"{_shape(logits)}, not logits of shape (B, C) = {expected} "
                           f"(num_classes={expected[1]}). Fix: return one score per class "
                           f"for each example ({CONTRACT})")


def _build_net(node: DictConfig, built: type, given: dict):
    """``model.net`` built as training builds it (Hydra, with ``given``)."""
    import inspect

    from hydra.utils import instantiate

    keys = {k: v for k, v in node.items() if not (k.startswith("_") and k.endswith("_"))}
    arguments = ", ".join([*(f"{k}={v}" for k, v in given.items()),
                           *(f"{k}={v} (model.net.{k})" for k, v in keys.items())])
    target = node._target_
    try:
        inspect.signature(built).bind(**{**keys, **given})
    except TypeError as err:
        raise DlforgeError(_argument_problem(target, err, given, arguments, built)) from None
    except ValueError:  # no signature to check: the call below tells
        pass
    try:
        return instantiate(node, **given)
    except Exception as err:
        cause = err.__cause__ or err  # Hydra wraps what the constructor raised
        raise DlforgeError(f"model.net._target_={target} rejects its arguments "
                           f"({type(cause).__name__}: {cause}); it was given {arguments}. Fix: "
                           f"correct those keys under model.net or the class's __init__ "
                           f"({CONTRACT})") from None


def _argument_problem(target: str, err: TypeError, given: dict, arguments: str,
                      built: type) -> str:
    """The message for arguments the constructor's signature does not take, naming the key
    (and, for a key it does not take, the nearest one it does)."""
    import difflib
    import inspect
    import re

    message = str(err)
    name = re.search(r"'(\w+)'", message)
    key = f"model.net.{name[1]}" if name else "model.net"
    hint = ""
    if name and name[1] in given:
        fix = (f"accept {name[1]} in {target}.__init__: every model is given num_classes "
               f"and the encoder's inputs (here {', '.join(given)})")
    elif "unexpected" in message:
        fix = f"remove {key} or add {name[1] if name else 'it'} to {target}.__init__"
        taken = [p for p in inspect.signature(built).parameters if p not in given]
        near = difflib.get_close_matches(name[1], taken, n=1) if name else []
        hint = f" Did you mean model.net.{near[0]}?" if near else ""
    else:
        fix = f"set {key} (e.g. `{key}=...` on the command line or in conf/model/)"
    return (f"{key}: {target} rejects its arguments ({message}); it was given {arguments}."
            f"{hint} Fix: {fix}")


def _shape(value) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}, {value.dtype}"
    return type(value).__name__
