"""Configs validate themselves with messages that name the field, the value and the fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core import budget
from core.config import ConfigError, ExperimentConfig
from core.pruning.base import Stage
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


@pytest.mark.parametrize(
    ("sections", "hint"),
    [
        ({"pruning": {"aux_coef": 0}}, "did you mean pruning.scorer.aux_coef?"),
        ({"pruning": {"method": "heuristic", "max_retries": 1}}, "pruning.heuristic.max_retries?"),
        ({"fusion": {"moma_capacity": 0.5}}, "did you mean fusion.moma.capacity?"),
        ({"fusion": {"cross_attention_every": 2}}, "did you mean fusion.cross_attention.every?"),
        ({"connector": {"heads": 2}}, "did you mean connector.attentional_pool.heads?"),
    ],
)
def test_an_old_flat_extension_key_points_at_its_sub_section(sections, hint):
    with pytest.raises(ConfigError, match="unknown key") as err:
        ExperimentConfig.from_dict(sections)
    assert hint in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("sections", "needle"),
    [
        (
            {"pruning": {"method": "scorer", "scorer": {"aux_coef": -1}}},
            "pruning.scorer.aux_coef=-1",
        ),
        (
            {"pruning": {"method": "easy", "easy": {"max_retries": -1}}},
            "pruning.easy.max_retries=-1",
        ),
        ({"fusion": {"arch": "moma", "moma": {"capacity": 2.0}}}, "fusion.moma.capacity=2.0"),
        ({"fusion": {"cross_attention": {"every": 0}}}, "fusion.cross_attention.every=0"),
        ({"connector": {"attentional_pool": {"heads": 0}}}, "connector.attentional_pool.heads=0"),
        (
            {"connector": {"type": "attentional_pool", "attentional_pool": {"heads": 5}}},
            "connector.attentional_pool.heads=5: must divide vision.dim=64",
        ),
        ({"pruning": {"scorer": {"aux_cof": 1}}}, "did you mean pruning.scorer.aux_coef"),
        ({"pruning": {"random": {"x": 1}}}, "pruning.random takes no settings"),
    ],
)
def test_sub_sections_validate_with_their_own_path(sections, needle):
    # unselected sub-sections (scorer under method=none, ...) are validated too
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_dict(sections)
    assert needle in str(err.value), str(err.value)


def test_only_the_selected_extensions_sub_section_is_kept():
    plain = ExperimentConfig.from_dict({"pruning": {"method": "random", "ratio": 0.5}})
    extra = ExperimentConfig.from_dict(
        {
            "pruning": {"method": "random", "ratio": 0.5, "scorer": {"aux_coef": 0.1}},
            "fusion": {"moma": {"capacity": 0.5}},
        }
    )
    assert extra.to_dict() == plain.to_dict() and extra.identity_hash() == plain.identity_hash()
    assert "scorer" not in extra.to_dict()["pruning"]
    stts = ExperimentConfig.from_dict(
        {"pruning": {"method": "scorer", "ratio": 0.5, "scorer": {"aux_coef": 0.1}}}
    )
    assert stts.pruning.options.aux_coef == 0.1
    assert stts.to_dict()["pruning"]["scorer"]["aux_coef"] == 0.1
    assert stts.flat()["pruning.scorer.aux_coef"] == 0.1 and "pruning.aux_coef" not in stts.flat()
    assert ExperimentConfig.from_dict(stts.to_dict()).identity_hash() == stts.identity_hash()
    other = ExperimentConfig.from_dict(
        {"pruning": {"method": "scorer", "ratio": 0.5, "scorer": {"aux_coef": 0.2}}}
    )
    assert other.identity_hash() != stts.identity_hash()


def test_display_metadata_of_every_method_and_arch():
    from core.extensions import display_metadata
    from core.registry import FUSION_ARCHS, REDUCERS

    method_keys = {"key", "label", "short", "order", "is_reference", "uses_ground_truth"}
    method_keys |= {"stage", "trained"}
    orders, references = set(), []
    for method in REDUCERS.names():
        for arch in FUSION_ARCHS.names():
            cfg = ExperimentConfig.from_dict(
                {
                    "pruning": {"method": method},
                    "fusion": {"arch": arch},
                    "data": {"ground_truth": True},
                    "lm": {"n_layers": 4},  # in-LLM methods' default drop layers need depth
                }
            )
            meta = display_metadata(cfg)
            assert set(meta) == {"method", "arch"}
            assert set(meta["method"]) == method_keys
            assert set(meta["arch"]) == {"key", "label", "short", "order"}
            assert meta["method"]["key"] == method and meta["arch"]["key"] == arch
            assert meta["method"]["stage"] in {str(stage) for stage in Stage}
        orders.add(meta["method"]["order"])
        if meta["method"]["is_reference"]:
            references.append(method)
    assert len(orders) == len(REDUCERS.names()) and references == ["none"]
    gt = {m for m in REDUCERS.names() if REDUCERS.get(m).needs_ground_truth}
    assert gt == {"oracle"}
    assert display_metadata(ExperimentConfig())["method"]["label"] == "unpruned"


def test_in_vit_reducers_need_an_encoder_that_hosts_them():
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_dict(
            {"vision": {"type": "random"}, "pruning": {"method": "scorer", "ratio": 0.5}}
        )
    message = str(err.value)
    assert "the random encoder has none" in message
    assert "vision.type=siglip2 or vit" in message and "pruning.method=none" in message


def test_hydra_defaults_carry_every_sub_section_and_unknown_keys_reach_core():
    from ablations import hydra_conf
    from ablations.overrides import plain

    defaults = hydra_conf.section_defaults()
    assert defaults["pruning"]["scorer"]["aux_coef"] == 0.5
    assert defaults["fusion"]["moma"]["capacity"] == 0.0
    assert defaults["connector"]["attentional_pool"] == {"heads": 4}
    cfg = hydra_conf.compose_launch(["pruning.scorer.aux_coef=0", "pruning.method=scorer"])
    sections = {name: plain(cfg[name]) for name in defaults}
    assert ExperimentConfig.from_dict(sections).pruning.options.aux_coef == 0
    # an old flat key is not rejected by Hydra's struct mode: core answers with did-you-mean
    cfg = hydra_conf.compose_launch(["pruning.aux_coef=0"])
    with pytest.raises(ConfigError, match=r"did you mean pruning\.scorer\.aux_coef"):
        ExperimentConfig.from_dict({name: plain(cfg[name]) for name in defaults})
