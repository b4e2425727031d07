"""Configs validate themselves with messages that name the field, the value and the fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core import budget
from core.config import ConfigError, ExperimentConfig
from core.registry import Registry


def test_defaults_are_the_valid_tiny_preset():
    cfg = ExperimentConfig()
    assert cfg.grid == 4 and cfg.tokens_per_frame == 16  # 64 px, patch 16, window 1
    assert cfg.kept_tokens() == cfg.data.max_frames * 16


@pytest.mark.parametrize(
    ("sections", "needles"),
    [
        ({"data": {"min_frames": 9, "max_frames": 8}}, ["data.min_frames=9", "max_frames"]),
        ({"data": {"dataset_type": "webvidd"}}, ["data.dataset_type", "did you mean", "webvid"]),
        ({"data": {"sampling_policy": "unifrom"}}, ["data.sampling_policy", "uniform"]),
        ({"data": {"frame_size": 60}}, ["data.frame_size=60", "patch_size"]),
        ({"fusion": {"arch": "mott"}}, ["fusion.arch", "mot"]),
        ({"vision": {"type": "siglip2"}}, ["vision.checkpoint", "siglip2"]),
        ({"lm": {"n_kv_heads": 3}}, ["lm.n_kv_heads=3"]),
        ({"data": {"fps": 0}}, ["data.fps=0"]),
        ({"train": {"precision": "fp8"}}, ["train.precision", "fp8"]),
        (
            {"data": {"max_frames": 16}, "lm": {"max_seq_len": 100}},
            ["token budget", "16 frames", "lm.max_seq_len=100"],
        ),
        ({"pruning": {"methd": "random"}}, ["pruning.methd", "did you mean pruning.method"]),
        ({"pruning": {"ratio": "half"}}, ["pruning.ratio", "number"]),
        ({"prunning": {}}, ["prunning", "unknown config section"]),
    ],
)
def test_bad_values_get_precise_errors(sections, needles):
    with pytest.raises((ConfigError, ValueError)) as err:
        ExperimentConfig.from_dict(sections)
    for needle in needles:
        assert needle.lower() in str(err.value).lower(), str(err.value)


def test_cross_attention_budget_ignores_visual_tokens():
    big = {"data": {"max_frames": 16}, "lm": {"max_seq_len": 100}}
    with pytest.raises(ValueError):
        ExperimentConfig.from_dict(big)
    ExperimentConfig.from_dict({**big, "fusion": {"arch": "cross_attention"}})


def test_pruning_shrinks_the_budget_check():
    # 16 frames × 16 = 256 visual tokens do not fit 200, but half of them do
    base = {"data": {"max_frames": 16}, "lm": {"max_seq_len": 200}}
    with pytest.raises(ValueError):
        ExperimentConfig.from_dict(base)
    cfg = ExperimentConfig.from_dict({**base, "pruning": {"method": "random", "ratio": 0.5}})
    assert cfg.kept_tokens() == 128


def test_identity_hash_ignores_runtime_keys_only():
    a = ExperimentConfig.from_dict({"pruning": {"method": "random", "ratio": 0.5}})
    b = ExperimentConfig.from_dict(
        {
            "pruning": {"method": "random", "ratio": 0.5},
            "data": {"data_root": "/elsewhere"},
            "logging": {"wandb": "disabled"},
        }
    )
    c = ExperimentConfig.from_dict({"pruning": {"method": "random", "ratio": 0.3}})
    assert a.identity_hash() == b.identity_hash() != c.identity_hash()
    assert ExperimentConfig.from_dict(a.to_dict()).identity_hash() == a.identity_hash()


@pytest.mark.parametrize(
    ("frames", "per_frame", "ratio", "p0", "pruned"),
    [
        (64, 81, 0.5, 0, 2592),
        (64, 81, 0.3, 0, 1555),
        (10, 81, 0.3, 0, 243),
        (8, 16, 0.7, 0, 89),
        (1, 16, 0.7, 0, 0),
        (4, 16, 0.5, 4, 0),
        (4, 16, 0.5, 2, 16),
        (8, 16, 0.0, 0, 0),
    ],
)
def test_pruned_token_formula(frames, per_frame, ratio, p0, pruned):
    assert budget.pruned_tokens(frames, per_frame, ratio, p0) == pruned
    assert budget.kept_tokens(frames, per_frame, ratio, p0) == frames * per_frame - pruned


def test_registry_unknown_key_message_lists_options():
    reg = Registry("widget")
    reg.register("alpha")(object)
    reg.register("beta")(object)
    with pytest.raises(KeyError) as err:
        reg.get("alpah")
    assert "did you mean 'alpha'" in str(err.value).lower() and "beta" in str(err.value)
    with pytest.raises(ValueError):
        reg.register("alpha")(int)


def test_core_never_imports_the_heavy_tools():
    code = (
        "import sys, importlib, pkgutil, core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'core.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "bad = [n for n in ('hydra', 'submitit', 'wandb', 'pandas', 'matplotlib') if n in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core imported: {out.stdout}"
