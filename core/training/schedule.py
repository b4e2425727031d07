"""AdamW with decay/no-decay and reducer parameter groups, plus warm-up + cosine LR schedules.

The token reducer's parameters (module path component `reducer`, e.g. `vision.reducer.mlp.0.weight`)
train at `train.reducer_lr` with their own warm-up `train.reducer_warmup_steps`, as STTS trains its
freshly initialised scorer beside a pretrained model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from core.config.train import TrainConfig

# Name substrings that mark embeddings/norms when only (name, param) pairs are given. A patch
# embedding is a linear projection and keeps its decay, so plain "embed" is not on the list.
NO_DECAY_KEYS = ("bias", "norm", "embedding", "embed_tokens", "pos_embed")
REDUCER_MODULE = "reducer"

ParamSource = nn.Module | Iterable[tuple[str, nn.Parameter]]


def _no_decay_by_name(name: str, param: nn.Parameter) -> bool:
    lowered = name.lower()
    return param.ndim < 2 or any(key in lowered for key in NO_DECAY_KEYS)


def _module_no_decay(model: nn.Module) -> set[str]:
    """Parameter names owned by embeddings or normalisation layers, judged by module type."""
    names = set()
    for mod_name, module in model.named_modules():
        kind = type(module).__name__.lower()
        if isinstance(module, nn.Embedding | nn.EmbeddingBag) or "norm" in kind:
            for p_name, _ in module.named_parameters(recurse=False):
                names.add(f"{mod_name}.{p_name}" if mod_name else p_name)
    return names


def _named_with_flags(source: ParamSource) -> list[tuple[str, nn.Parameter, bool]]:
    if isinstance(source, nn.Module):
        typed = _module_no_decay(source)
        return [(n, p, n in typed or _no_decay_by_name(n, p)) for n, p in source.named_parameters()]
    return [(n, p, _no_decay_by_name(n, p)) for n, p in source]


def is_reducer_parameter(name: str) -> bool:
    """True for parameters of the token reducer (a `reducer` component in the dotted name)."""
    return REDUCER_MODULE in name.split(".")


def param_groups(named_params: ParamSource, cfg: TrainConfig) -> list[dict]:
    """Up to four groups: (main | reducer) × (decay | no decay); frozen params are left out.

    `named_params` is `model.named_parameters()` or the model itself. Biases, norms, embeddings and
    every 1-d tensor get no weight decay (by module type when a model is given, else by name);
    reducer parameters use `cfg.reducer_lr`."""
    buckets: dict[tuple[bool, bool], list[tuple[str, nn.Parameter]]] = {}
    seen: set[int] = set()
    for name, param, no_decay in _named_with_flags(named_params):
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        key = (is_reducer_parameter(name), no_decay)
        buckets.setdefault(key, []).append((name, param))
    groups = []
    for (reducer, no_decay), items in sorted(buckets.items()):
        groups.append(
            {
                "params": [p for _, p in items],
                "names": [n for n, _ in items],
                "lr": cfg.reducer_lr if reducer else cfg.lr,
                "weight_decay": 0.0 if no_decay else cfg.weight_decay,
                "group": f"{'reducer' if reducer else 'main'}/{'no_decay' if no_decay else 'decay'}",
            }
        )
    return groups


def build_optimizer(named_params: ParamSource, cfg: TrainConfig) -> torch.optim.AdamW:
    groups = param_groups(named_params, cfg)
    if not groups:
        raise ValueError(
            "no trainable parameters: every parameter has requires_grad=False. "
            "Fix: unfreeze part of the model (e.g. vision.frozen=false) or train a connector."
        )
    return torch.optim.AdamW(groups, betas=(0.9, 0.95), eps=1e-8)


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the base lr at `step` (0-based): linear ramp (step+1)/warmup over the first
    `warmup_steps` steps, then cosine from 1 to `min_lr_ratio` at the last step."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = total_steps - warmup_steps
    if decay_steps <= 1:
        return 1.0 if step < total_steps else min_lr_ratio
    progress = min(1.0, (step - warmup_steps) / (decay_steps - 1))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class _Factor:
    """Picklable lr lambda (LambdaLR state_dict stores callable objects' __dict__)."""

    def __init__(self, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.warmup_steps, self.total_steps, self.min_lr_ratio)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up then cosine decay to `cfg.min_lr_ratio` × each group's base lr, over `total_steps`;
    reducer groups warm up over `cfg.reducer_warmup_steps` (None: `cfg.warmup_steps`)."""
    if total_steps < 0:
        raise ValueError(f"total_steps={total_steps}: must be ≥ 0")
    main = _Factor(min(cfg.warmup_steps, total_steps), total_steps, cfg.min_lr_ratio)
    warm = cfg.warmup_steps if cfg.reducer_warmup_steps is None else cfg.reducer_warmup_steps
    reducer = _Factor(min(warm, total_steps), total_steps, cfg.min_lr_ratio)
    factors = [
        reducer if str(g.get("group", "")).startswith("reducer") else main
        for g in optimizer.param_groups
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
