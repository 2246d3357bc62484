"""Strategy factories for configs that need Python objects (class sets, policies)."""

from __future__ import annotations

from hydra.utils import get_class


def fsdp(sharding_strategy: str = "FULL_SHARD", activation_checkpointing: list[str] = (),
         cpu_offload: bool = False):
    """Lightning's FSDPStrategy from plain config values.

    Args:
        sharding_strategy: FULL_SHARD, SHARD_GRAD_OP, HYBRID_SHARD or NO_SHARD.
        activation_checkpointing: dotted names of layer classes whose activations
            are recomputed in the backward pass instead of kept in memory.
        cpu_offload: keep parameters on the CPU between uses.
    """
    from lightning.pytorch.strategies import FSDPStrategy

    layers = {get_class(name) for name in activation_checkpointing}
    return FSDPStrategy(sharding_strategy=sharding_strategy, cpu_offload=cpu_offload,
                        activation_checkpointing_policy=layers or None,
                        auto_wrap_policy=layers or None)
