"""What ``capture`` needs to know about a sharded model: the scheme, and when a weight is whole.

A sharded model holds each weight whole only inside the forward of the module (or FSDP
unit) that owns it; outside, the weight is a shard or a placeholder:

- FSDP1 (``FullyShardedDataParallel``), ``use_orig_params=False``: a ``[V, H]`` view whose
  storage has been freed (size 0); ``use_orig_params=True``: a flat 1-d slice of this rank's
  shard (possibly empty).
- FSDP2 (``fully_shard``): a ``DTensor`` sharded along dim 0.
- DeepSpeed ZeRO-3: an empty placeholder (``torch.Size([0])`` or 0-d), the real shape in
  ``param.ds_shape``; gathered in the module's own forward pre-hook, released in its
  forward hook.

:func:`is_whole` tells the two apart from the tensor alone, so ``capture`` can take its dot
products at the first moment the weight is whole, whatever the scheme. Nothing here imports
``torch.distributed`` or DeepSpeed: a model can only be wrapped by a package that is
already imported.
"""
from __future__ import annotations

import sys

_WRAPPER_ATTRS = ("_fsdp_wrapped_module", "_checkpoint_wrapped_module")


def is_dtensor(tensor) -> bool:
    """Whether ``tensor`` is a ``torch.distributed.tensor.DTensor`` (without importing it)."""
    module = sys.modules.get("torch.distributed.tensor")
    dtensor = getattr(module, "DTensor", None)
    return dtensor is not None and isinstance(tensor, dtensor)


def is_whole(tensor, shape: tuple) -> bool:
    """Whether ``tensor`` is a plain tensor of ``shape`` whose storage holds all its elements.

    False for a DTensor, a meta tensor, a placeholder of another shape, and a view into a
    storage that a sharding scheme has freed (FSDP1 resizes it to 0 bytes).
    """
    if tensor is None or is_dtensor(tensor) or tuple(tensor.shape) != tuple(shape):
        return False
    if tensor.device.type == "meta":
        return False
    if tensor.numel() == 0:
        return True
    last = tensor.storage_offset() + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride()))
    return (last + 1) * tensor.element_size() <= tensor.untyped_storage().nbytes()


def inner_module(module):
    """The module an FSDP1 or activation-checkpoint wrapper runs (``module`` if none).

    Hooks that need a wrapped module's weights go on the inner module: its forward runs
    inside the wrapper's, after the wrapper gathered the weights and before it frees them.
    """
    while True:
        inner = next((module._modules[a] for a in _WRAPPER_ATTRS if a in module._modules), None)
        if inner is None:
            return module
        module = inner


def detect_sharding(model, modules=None) -> str | None:
    """The sharding scheme of ``model``: ``"fsdp1"``, ``"fsdp2"``, ``"zero3"`` or None.

    One pass over the modules (``modules``: ``list(model.modules())`` when the caller has
    it) and their own parameters; a capture is built per micro-batch. Raises ``ValueError``
    for the layouts ``capture`` refuses: Megatron-Core models (pipeline stages,
    vocabulary-parallel output layer) and tensor parallelism (``DTensor`` parameters
    without FSDP2).
    """
    modules = list(model.modules()) if modules is None else modules
    if "megatron" in sys.modules:  # no Megatron model exists unless megatron was imported
        _refuse_megatron(modules)
    fsdp = sys.modules.get("torch.distributed.fsdp")
    fsdp1, fsdp2 = getattr(fsdp, "FullyShardedDataParallel", None), getattr(fsdp, "FSDPModule", None)
    wrappers = tuple(c for c in (fsdp1, fsdp2) if c is not None)
    dtensor = getattr(sys.modules.get("torch.distributed.tensor"), "DTensor", None)
    has_dtensor = has_ds_id = False
    for module in modules:
        if wrappers and isinstance(module, wrappers):
            return "fsdp1" if fsdp1 is not None and isinstance(module, fsdp1) else "fsdp2"
        for param in module._parameters.values():
            has_dtensor = has_dtensor or (dtensor is not None and isinstance(param, dtensor))
            has_ds_id = has_ds_id or hasattr(param, "ds_id")
    if has_dtensor:
        raise ValueError(
            "medscore.capture does not support tensor parallelism: the model has DTensor "
            "parameters outside FSDP2, so no rank ever holds the whole unembedding or the "
            "whole hidden state; shard it with FSDP or FSDP2 instead"
        )
    return "zero3" if has_ds_id else None


def _refuse_megatron(modules) -> None:
    for module in modules:
        if type(module).__module__.split(".")[0] == "megatron":
            raise ValueError(
                f"medscore.capture does not support Megatron-Core models ({type(module).__name__}): "
                "their layers are split into pipeline stages and the output layer by vocabulary; "
                "run the actor with veRL's FSDP or FSDP2 engine (actor_rollout_ref.actor.strategy=fsdp2)"
            )


def output_embedding(model):
    """``(module, vocab_size, hidden_size)`` of the model's output embedding (``lm_head``).

    Found through ``get_output_embeddings`` of the first module that defines it, so wrappers
    (FSDP1, DDP, a DeepSpeed engine) are looked through; the module is unwrapped with
    :func:`inner_module`. The sizes come from the module (``nn.Linear``/``nn.Embedding``) or,
    failing that, from a weight that is whole now. Raises ``ValueError`` when there is none.
    """
    for module in model.modules():
        # The class, not the instance: FSDP1's __getattr__ forwards every name to the
        # wrapped model, so the wrapper would answer for the model inside it.
        if getattr(type(module), "get_output_embeddings", None) is None:
            continue
        embeddings = module.get_output_embeddings()
        if embeddings is None:
            continue
        embeddings = inner_module(embeddings)
        sizes = _sizes(embeddings)
        if sizes is not None:
            return (embeddings, *sizes)
        break
    raise ValueError(
        f"unsupported model {type(model).__name__}: no output embedding (lm_head) weight [V, H]"
    )


def _sizes(module):
    for vocab, hidden in (("out_features", "in_features"), ("num_embeddings", "embedding_dim")):
        if isinstance(getattr(module, vocab, None), int) and isinstance(getattr(module, hidden, None), int):
            return getattr(module, vocab), getattr(module, hidden)
    weight = getattr(module, "weight", None)
    if weight is not None and weight.ndim == 2 and is_whole(weight, tuple(weight.shape)):
        return tuple(weight.shape)
    return None


__all__ = ["detect_sharding", "inner_module", "is_dtensor", "is_whole", "output_embedding"]
