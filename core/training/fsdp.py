"""FSDP2 sharding and activation checkpointing, applied per block from outside the model classes.

A *block* is the outermost module of one of `BLOCK_TYPES` (every ViT block, every LLM / fusion
decoder block; a MoT block's per-modality DecoderBlocks stay inside their MoTBlock, which calls
their parts directly). Each block becomes one FSDP unit (its parameters all-gathered just before
it runs and freed after); so do the token embedding and the LM head unless tied (at a real
vocabulary each is as large as several blocks); the root unit takes the rest (patch embedding,
reducer, connector, norms). Blocks run through `forward` and any `forward_*` method (the ViT's
packed path), so both are registered with FSDP and both are checkpointed.

Activation checkpointing wraps those methods on the block instance with non-reentrant
`torch.utils.checkpoint`: parameter names, state dicts and the optimiser's view are untouched, and
the block recomputes its activations in backward instead of keeping them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import (
    CPUOffloadPolicy,
    FSDPModule,
    MixedPrecisionPolicy,
    OffloadPolicy,
    fully_shard,
    register_fsdp_forward_method,
)
from torch.utils.checkpoint import checkpoint

from core.models.fusion.cross_attention import CrossAttentionBlock
from core.models.fusion.moma import MoMaBlock
from core.models.fusion.mot import MoTBlock
from core.models.language_model import DecoderBlock
from core.models.vision.vit import ViTBlock
from core.training.precision import uses_bf16

BLOCK_TYPES: tuple[type[nn.Module], ...] = (
    ViTBlock,
    DecoderBlock,
    CrossAttentionBlock,
    MoTBlock,
    MoMaBlock,
)

_CHECKPOINTED = "_activation_checkpointed"  # instance attribute: the method names wrapped


def find_blocks(model: nn.Module) -> list[nn.Module]:
    """The outermost `BLOCK_TYPES` modules of `model`, in module order."""
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(child, BLOCK_TYPES):
                found.append(child)
            else:
                visit(child)

    visit(model)
    return found


def find_vocab_layers(model: nn.Module) -> list[nn.Module]:
    """Token embeddings (`nn.Embedding`) and LM heads (the `lm_head` Linear of the Qwen3 layout)
    outside the blocks, except those sharing a parameter with another module (tied embeddings
    stay together in the root unit: FSDP cannot split one parameter over two units)."""
    owners: dict[int, int] = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    in_blocks = {id(m) for b in find_blocks(model) for m in b.modules()}
    return [
        module
        for name, module in model.named_modules()
        if id(module) not in in_blocks
        and (isinstance(module, nn.Embedding) or name.rsplit(".", 1)[-1] == "lm_head")
        and all(owners[id(p)] == 1 for p in module.parameters())
    ]


def forward_methods(block: nn.Module) -> list[str]:
    """`forward` plus every `forward_*` method of the block's class (e.g. `forward_packed`)."""
    extra = sorted(
        name
        for name in dir(type(block))
        if name.startswith("forward_") and callable(getattr(type(block), name))
    )
    return ["forward", *extra]


def _checkpointed(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():  # evaluation: nothing to save, nothing to recompute
            return method(*args, **kwargs)
        return checkpoint(method, *args, use_reentrant=False, **kwargs)

    return run


def apply_activation_checkpointing(model: nn.Module) -> int:
    """Checkpoint every block's forward methods (idempotent); returns the number of blocks."""
    blocks = find_blocks(model)
    for block in blocks:
        if getattr(block, _CHECKPOINTED, None):
            continue
        names = forward_methods(block)
        for name in names:
            setattr(block, name, _checkpointed(getattr(block, name)))
        setattr(block, _CHECKPOINTED, tuple(names))
    return len(blocks)


def remove_activation_checkpointing(model: nn.Module) -> None:
    """Undo `apply_activation_checkpointing` (for evaluation and timing on the plain model)."""
    for block in find_blocks(model):
        for name in getattr(block, _CHECKPOINTED, ()):
            delattr(block, name)
        if hasattr(block, _CHECKPOINTED):
            delattr(block, _CHECKPOINTED)


def mixed_precision(device: torch.device, precision: str) -> MixedPrecisionPolicy:
    """bf16 parameters in compute and fp32 gradient reduction where training uses bf16 (CUDA,
    `train.precision` auto/bf16); full fp32 otherwise."""
    if uses_bf16(device, precision):
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def shard_model(
    model: nn.Module, device: torch.device, precision: str = "auto", cpu_offload: bool = False
) -> nn.Module:
    """Apply FSDP2 in place: one unit per block, one per untied token embedding / LM head, then
    the root (the rest); returns `model`.

    Call it after the model is on `device` and before the optimiser is built (FSDP replaces the
    parameters with sharded DTensors). Requires an initialised process group."""
    if not dist.is_initialized():
        raise RuntimeError(
            "train.parallel=fsdp needs a process group. Fix: launch with torchrun (the cell "
            "ignores train.parallel when it runs as a single process)."
        )
    if cpu_offload and device.type != "cuda":
        raise ValueError(
            f"train.fsdp_cpu_offload=true on device {device}: offloading parameters to the CPU "
            "only makes sense when training on CUDA. Fix: set train.fsdp_cpu_offload=false."
        )
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    offload: OffloadPolicy = CPUOffloadPolicy(pin_memory=True) if cpu_offload else OffloadPolicy()
    options: dict[str, Any] = {
        "mesh": mesh,
        "mp_policy": mixed_precision(device, precision),
        "offload_policy": offload,
    }
    for block in find_blocks(model):
        fully_shard(block, **options)
        for name in forward_methods(block)[1:]:
            register_fsdp_forward_method(block, name)
    for layer in find_vocab_layers(model):  # vocabulary-sized: never gathered with the root
        fully_shard(layer, **options)
    fully_shard(model, **options)
    # A parameter some rank did not use this step (an expert no token was routed to) gets a zero
    # gradient there, so every rank reduce-scatters the same tensors (DDP: find_unused_parameters).
    # Unlike DDP, one that NO rank used also gets a zero gradient rather than none, so AdamW still
    # decays it and moves it by its momentum.
    model.set_reduce_scatter_unused_params(True)
    return model


def fsdp_units(model: nn.Module) -> Iterator[nn.Module]:
    """Every FSDP unit of `model` (blocks, then the root), for inspection."""
    return (m for m in model.modules() if isinstance(m, FSDPModule))


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Collective: the full (unsharded) state dict on CPU on rank 0, {} on the other ranks."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)
