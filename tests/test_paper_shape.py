"""`scale=paper` is Molmo2-4B's shapes: it composes in every grid (64 and 128 frames), counts as
benchmarks/flops_table.py counts at those shapes, builds to Qwen3-4B's and SigLIP's parameter counts,
and is what benchmarks/paper_shape.py times; the benchmark's packed-vs-per-frame harness runs the
same computation as the model (no timing is asserted here)."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch

from ablations import app, hydra_conf
from ablations.overrides import read_command_line
from core.config import ExperimentConfig
from core.config._build import flatten
from core.efficiency.flops import analytic_flops
from core.models.vlm import VideoVLM

REPO = Path(__file__).resolve().parents[1]
GRIDS = hydra_conf.available("grid")
ARCHS = hydra_conf.available("arch")


def load_script(name: str):
    """A benchmarks/ script as a module (benchmarks/ is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


FLOPS_TABLE = load_script("flops_table")
PAPER = load_script("paper_shape")


def composed(*overrides: str) -> ExperimentConfig:
    """The experiment config Hydra composes for `scale=paper` plus `overrides` (no grid)."""
    cfg = hydra_conf.compose_launch(["scale=paper", *overrides])
    return ExperimentConfig.from_dict(
        {name: app.plain(cfg[name]) for name in hydra_conf.section_defaults()}
    )


def test_paper_preset_pins_molmo2_4b_shapes() -> None:
    cfg = composed()
    flat = cfg.flat()
    for key, value in flatten(FLOPS_TABLE.MOLMO2).items():  # flops_table's Molmo2-4B shapes
        if key != "data.min_frames":
            assert flat[key] == value, key
    v, lm, c = cfg.vision, cfg.lm, cfg.connector
    assert (cfg.data.frame_size, v.patch_size, cfg.grid, cfg.tokens_per_frame) == (378, 14, 27, 81)
    assert (v.dim, v.mlp_dim, v.heads, v.depth, c.window) == (1152, 4304, 16, 25, 3)
    assert (lm.n_layers, lm.dim, lm.n_heads, lm.head_dim, lm.n_kv_heads) == (36, 2560, 32, 128, 8)
    assert (lm.resolved_ffn_dim, lm.vocab_size, lm.qk_norm, lm.rope_theta) == (
        9728,
        151936,
        True,
        1_000_000.0,
    )
    assert (cfg.data.max_frames, cfg.pruning.method, cfg.pruning.prune_at) == (64, "scorer", 3)
    t = cfg.train
    assert (t.parallel, t.activation_checkpointing, t.precision) == ("fsdp", True, "bf16")
    long = composed("data.max_frames=128")  # the documented 128-frame override
    assert long.kept_tokens() == 128 * 81 // 2 and long.lm.max_seq_len >= 128 * 81 + 256


def test_the_benchmark_times_the_preset_hydra_composes() -> None:
    """benchmarks/paper_shape.py reads the YAML without Hydra (the GPU machine has none): the same
    config, bar the frame and text counts it sets."""
    ours = PAPER.bench_config(PAPER.preset_sections(), 64, 0.5, 256).flat()
    hydra = composed("data.max_text_len=256", "data.min_frames=1").flat()
    assert ours == hydra
    unpruned = PAPER.bench_config(PAPER.preset_sections(), 128, 0.0, 256)
    assert unpruned.pruning.method == "none" and unpruned.data.max_frames == 128


def recorded_totals(frames: int) -> dict[float, float]:
    """Analytic total GFLOPs per topk at `frames` in benchmarks/results/flops_molmo2.md."""
    text = (REPO / "benchmarks" / "results" / "flops_molmo2.md").read_text()
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 8 and cells[0] == str(frames) and re.fullmatch(r"[\d.]+", cells[1]):
            out[float(cells[1])] = float(cells[7].split("/")[0])
    return out


@pytest.mark.parametrize("frames", [64, 128])
def test_paper_analytic_count_is_flops_tables_at_molmo2_shapes(frames: int) -> None:
    recorded = recorded_totals(frames)
    assert set(recorded) == {0.0, 0.3, 0.5}
    for ratio in (0.0, 0.3, 0.5, 0.7):
        cfg = PAPER.bench_config(PAPER.preset_sections(), frames, ratio, 256)
        ours = analytic_flops(cfg)
        theirs = analytic_flops(FLOPS_TABLE.make_config(FLOPS_TABLE.MOLMO2, frames, ratio, 256))
        assert ours.to_dict() == theirs.to_dict()
        if ratio in recorded:  # the table was printed with one decimal
            assert ours.total == pytest.approx(recorded[ratio], abs=0.051)
    # the independent count: FlopCounterMode over the real modules on the meta device
    cfg = PAPER.bench_config(PAPER.preset_sections(), frames, 0.5 if frames == 64 else 0.0, 256)
    counted, fl = FLOPS_TABLE.meta_count(cfg), analytic_flops(cfg)
    for part in ("vit", "reducer", "connector", "llm", "total"):
        assert counted[part] == pytest.approx(getattr(fl, part), rel=1e-9), part


def plan_cells(*overrides: str) -> list:
    cfg = hydra_conf.compose_launch(overrides)
    cli = read_command_line(cfg, overrides)
    return app.compose_cells(cfg, app.grid_spec(cfg, cli), cli)


@pytest.mark.parametrize("frames", [64, 128])
@pytest.mark.parametrize("grid", GRIDS)
def test_every_grid_composes_at_paper_scale_with_molmo2_shapes(grid: str, frames: int) -> None:
    extra = () if frames == 64 else (f"data.max_frames={frames}",)
    cells = plan_cells(f"grid={grid}", "scale=paper", *extra)
    assert cells
    for cell in cells:  # each config is validated (budget, windows, prune_at) when composed
        c = cell.config
        assert (c.data.max_frames, c.grid, c.tokens_per_frame, c.vision.depth) == (
            frames,
            27,
            81,
            25,
        )
        assert (c.vision.dim, c.lm.dim, c.lm.n_layers, c.lm.head_dim) == (1152, 2560, 36, 128)
        assert c.train.parallel == "fsdp" and c.train.activation_checkpointing


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_builds_at_paper_scale_on_the_meta_device(arch: str) -> None:
    """The whole 4B-class model at 128 frames, shapes only: its token budget holds."""
    cfg = composed(f"arch={arch}", "data.max_frames=128")
    with torch.device("meta"):
        model = VideoVLM(cfg, cfg.lm.vocab_size)
    assert model.vision.num_tokens(128) == cfg.kept_tokens() == 5184
    assert sum(p.numel() for p in model.parameters()) > 4.7e9


@pytest.mark.hf
def test_paper_parameter_counts_are_qwen3_4b_and_siglip_so400m() -> None:
    """Our LLM and ViT at the preset have the parameters of HF's Qwen3-4B (36 layers) and SigLIP
    so400m/14 vision tower run to block 25 (both built on the meta device); our LM head is its own
    matrix where Qwen3-4B ties it to the embedding."""
    transformers = pytest.importorskip("transformers")
    cfg = composed()
    with torch.device("meta"):
        ours = VideoVLM(cfg, cfg.lm.vocab_size)
        qwen = transformers.Qwen3ForCausalLM(
            transformers.Qwen3Config(
                vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                rope_theta=1_000_000.0, tie_word_embeddings=True,
            )
        )  # fmt: skip
        siglip = transformers.SiglipVisionModel(
            transformers.SiglipVisionConfig(
                hidden_size=1152, intermediate_size=4304, num_hidden_layers=25,
                num_attention_heads=16, image_size=378, patch_size=14, vision_use_head=False,
            )
        )  # fmt: skip

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert count(qwen) == 4_022_468_096  # Qwen3-4B
    head = ours.fusion.lm.lm_head.weight.numel()
    assert count(ours.fusion) - head == count(qwen)
    assert count(ours.vision.encoder) == count(siglip)


# ---- the benchmark's harness (smoke shapes, fp32 on the CPU) ------------------------------------
def smoke_model(frames: int = 4, ratio: float = 0.5):
    cfg = PAPER.bench_config(PAPER.preset_sections(smoke=True), frames, ratio, 16)
    model = PAPER.build_model(cfg, torch.device("cpu"), torch.float32, checkpointing=True)
    return cfg, model, PAPER.make_batch(cfg, 2, torch.device("cpu"))


@pytest.mark.filterwarnings("ignore:.*[Nn]ested tensors")  # jagged SDPA's CPU fallback
def test_packed_capture_reruns_the_models_blocks_and_equals_the_per_frame_run() -> None:
    cfg, model, batch = smoke_model()
    enc = model.vision.encoder
    start = cfg.pruning.prune_at + 2  # scoring after prune_at, then STTS's key-bias block
    checkpointed = enc.blocks[start].__dict__["forward_packed"]
    seen = {}
    hook = enc.norm.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    try:
        blocks, x, plan = PAPER.capture_packed(
            model, PAPER.prefill_step(model, batch, torch.device("cpu"), "fp32")
        )
    finally:
        hook.remove()
    assert blocks == list(enc.blocks[start:])
    assert enc.blocks[start].__dict__["forward_packed"] is checkpointed  # the wrapper restored
    keep = PAPER.keep_mask(plan, 2, 4, cfg.tokens_per_frame)
    assert keep.flatten(1).sum(1).tolist() == [cfg.kept_tokens()] * 2
    assert keep[:, 0].all()  # STTS keeps the first frame whole
    assert x.shape == (2 * cfg.kept_tokens() * cfg.connector.window**2, cfg.vision.dim)
    groups = PAPER.frame_groups(plan)
    assert sorted(torch.cat([g.flatten() for g in groups]).tolist()) == list(range(x.shape[0]))
    offsets = PAPER.frame_offsets(plan)
    assert offsets[-1] == x.shape[0] and len(offsets) == 2 * 4 + 1 - int((keep.sum(-1) == 0).sum())
    with torch.no_grad():
        packed = PAPER.run_packed(blocks, x, plan)
        per_frame = PAPER.run_per_frame(blocks, x, groups)
        varlen = PAPER.run_varlen(blocks, x, offsets, checkpointing=True)
    torch.testing.assert_close(packed, seen["x"], rtol=1e-6, atol=1e-6)  # what the model ran
    torch.testing.assert_close(per_frame, packed, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(varlen, packed, rtol=1e-5, atol=1e-5)
    grads = []  # the same gradients too, checkpointed as in training
    for run in (lambda h: PAPER.run_packed(blocks, h, plan),
                lambda h: PAPER.run_varlen(blocks, h, offsets, checkpointing=True)):  # fmt: skip
        h = x.detach().requires_grad_()
        run(h).square().mean().backward()
        grads.append((h.grad, blocks[0].fc1.weight.grad, blocks[-1].attn.qkv.weight.grad))
        model.zero_grad(set_to_none=True)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_analytic_layouts_and_masked_slots() -> None:
    cfg = PAPER.bench_config(PAPER.preset_sections(smoke=True), 4, 0.5, 16)
    ref = analytic_flops(PAPER.bench_config(PAPER.preset_sections(smoke=True), 4, 0.0, 16))
    even = torch.tensor([[True, True, False, False]] * 4).expand(2, 4, 4)  # 2 of 4 windows/frame
    tight = {"rows": 8, "capacity": 18, "blocks": 3}  # 8 frames of 18 patches: no masked slot
    a = PAPER.analytic(cfg, ref, even, tight)
    assert a["even"] == ref.total / analytic_flops(cfg).total
    assert a["real_layout"] == pytest.approx(a["even"]) and a["as_executed"] == a["real_layout"]
    skewed = torch.tensor([[True] * 4, [True] * 2 + [False] * 2, [True] * 2 + [False] * 2,
                           [False] * 4]).expand(2, 4, 4)  # fmt: skip
    loose = {"rows": 6, "capacity": 36, "blocks": 3}
    b = PAPER.analytic(cfg, ref, skewed, loose)
    assert b["real_layout"] < b["even"]  # a whole frame kept: Σ n_f² grows
    assert b["as_executed"] < b["real_layout"]  # 6·36² slots computed for Σ n_f² = 2·(36²+2·18²)


def test_budget_skips_a_setting_that_would_not_fit() -> None:
    budget = PAPER.Budget(minutes=1.0)
    assert budget.fits(64)  # nothing measured yet: nothing to extrapolate from
    budget.work.update({64: 100.0, 128: 230.0})
    budget.cost[64] = 20.0
    assert budget.estimate(64) == pytest.approx(24.0)
    assert budget.estimate(128) == pytest.approx(1.5 * 20.0 * 2.3)
    assert budget.fits(64) and not budget.fits(128)
    assert PAPER.Budget(minutes=0).fits(128)  # 0: no limit


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--device", "cpu", "--ratios", "0"], "need ratios in (0, 1)"),
        (["--device", "cpu", "--frames", "1"], "at least 2 frames"),
        (["--device", "cpu", "--dtype", "bf16"], "--dtype bf16 needs --device cuda"),
        (["--device", "cpu", "--profile-at", "64"], "use FRAMES:TOPK"),
        (["--device", "cpu", "--profile", "--profile-at", "64:0.5", "--frames", "4"], "not among"),
    ],
)
def test_bad_arguments_are_refused_with_the_fix(argv, message, capsys) -> None:
    with pytest.raises(SystemExit):
        PAPER.parse_args(argv)
    assert message in capsys.readouterr().err


def test_a_short_run_writes_tables_json_and_keeps_hand_notes(tmp_path) -> None:
    out = tmp_path / "paper_shape.md"
    out.write_text(f"old table\n\n{PAPER.NOTES}\n\nkept by hand\n")
    args = PAPER.parse_args(
        ["--smoke", "--device", "cpu", "--frames", "4", "--ratios", "0.5", "--iters", "1",
         "--warmup", "0", "--threads", "0", "--out", str(out)]
    )  # fmt: skip
    state = PAPER.run(args)
    text = out.read_text()
    assert "old table" not in text and text.rstrip().endswith("kept by hand")
    assert "| 4 | 0.5 | 8 |" in text and "Machine:" in text
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["complete"] and len(saved["rows"]) == 1 == len(state["rows"])
    row = saved["rows"][0]
    assert row["packing"]["rel_diff"] < 1e-5
    assert row["analytic"]["kept_tokens"] == 8
    again = tmp_path / "again.md"  # --from-json renders the same report from the JSON
    assert PAPER.main(["--from-json", str(out.with_suffix(".json")), "--out", str(again)]) == 0
    assert again.read_text() == text[: text.index(PAPER.NOTES)].rstrip("\n") + "\n"


def test_run_is_ratio_major_and_an_oom_frame_count_is_skipped_not_fatal(tmp_path, monkeypatch):
    """The headline topk 0.5 runs first at every frame count (a run cut short keeps it); one
    unpruned model is held at a time (rebuilt when the frame count changes); a frame count whose
    unpruned model runs out of memory is skipped at every ratio and the others still run."""
    built: list[int] = []
    real = PAPER.build_reference

    def build(sections, frames, args, budget, state):
        built.append(frames)
        if frames == 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(sections, frames, args, budget, state)

    monkeypatch.setattr(PAPER, "build_reference", build)
    args = PAPER.parse_args(
        ["--smoke", "--device", "cpu", "--frames", "4", "8", "--ratios", "0.3", "0.5",
         "--iters", "1", "--warmup", "0", "--threads", "0", "--out", str(tmp_path / "p.md")]
    )  # fmt: skip
    state = PAPER.run(args)
    assert [(r["frames"], r["ratio"]) for r in state["rows"]] == [(4, 0.5), (4, 0.3)]
    assert built == [4, 8, 4]  # 8 failed once, never retried; 4 rebuilt after it was dropped
    assert state["skipped"] == [
        "8 frames, topk 0.5: unpruned model: out of memory (CUDA out of memory (simulated))",
        "8 frames, topk 0.3: no unpruned model",
    ]
    assert not state["complete"] and set(state["frames"]) == {"4"}
    assert "## Skipped" in (tmp_path / "p.md").read_text()


# ---- deferred initialisation: meta device, then FSDP shards materialised per rank ---------------
META_FSDP = ("vision.depth=3", "pruning.prune_at=0", "lm.n_layers=1", "lm.vocab_size=8192",
             "data.frame_size=84",
             "data.max_frames=2", "data.min_frames=1", "data.max_text_len=16")  # fmt: skip


def test_paper_preset_builds_on_the_meta_device_without_storage() -> None:
    """Every parameter and buffer of the 4.8 B-parameter preset is a meta tensor (no memory), and
    the count is Qwen3-4B + its untied LM head + SigLIP so400m/14 run to block 25 (the numbers the
    hf test checks against transformers) + the 3×3 pooling connector, the STTS scorer and the
    frame embedding."""
    cfg = composed()
    with torch.device("meta"):
        model = VideoVLM(cfg, cfg.lm.vocab_size)
    tensors = [*model.parameters(), *model.buffers()]
    assert tensors and all(t.is_meta for t in tensors)
    d, mlp, grid = 1152, 4304, 27
    siglip_block = 4 * d + 4 * (d * d + d) + 2 * d * mlp + mlp + d  # 2 LN, q k v o, fc1 fc2
    siglip = 3 * 14 * 14 * d + d + grid * grid * d + 25 * siglip_block + 2 * d  # + post-LN
    assert siglip == 382_508_240

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert count(model.vision.encoder) == siglip
    assert count(model.fusion) == 4_022_468_096 + 151936 * 2560  # Qwen3-4B + untied head
    assert model.vision.frame_embedding.numel() == 64 * 2560  # a learnt embedding per frame
    rest = count(model.vision.connector) + count(model.vision.reducer) + 64 * 2560
    assert count(model) == siglip + 4_022_468_096 + 151936 * 2560 + rest
    assert 4.83e9 < count(model) < 4.84e9


def _meta_fsdp_rank(rank: int, world: int, port: int, out: str) -> None:
    """One rank: the preset (Molmo2-4B widths, reduced depth and vocabulary) built on meta, sharded
    by FSDP2 while still on meta, then only this rank's shards materialised (`to_empty`) and
    initialised; one training step on the same batch as the other rank."""
    import os

    from core.models.attention import RotaryEmbedding
    from core.training.fsdp import shard_model
    from tests.cell_fixtures import join_as_rank

    join_as_rank(rank, world, port)
    torch.distributed.init_process_group("gloo")
    cfg = composed(*META_FSDP)
    with torch.device("meta"):
        model = VideoVLM(cfg, cfg.lm.vocab_size)
    full = {n: list(p.shape) for n, p in model.named_parameters()}
    shard_model(model, torch.device("cpu"), "fp32")
    still_meta = all(p.to_local().is_meta for p in model.parameters())
    model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(1000 + rank)
    with torch.no_grad():
        for name, p in model.named_parameters():
            local = p.to_local()
            if "norm" in name and name.endswith("weight"):
                local.fill_(1.0)
            elif name.endswith("bias"):
                local.zero_()
            else:
                local.normal_(0.0, 0.02, generator=g)
        rope = model.fusion.lm.rotary
        rope.inv_freq.copy_(RotaryEmbedding(cfg.lm.head_dim, cfg.lm.rope_theta).inv_freq)
    local = {n: p.to_local().numel() for n, p in model.named_parameters()}
    batch = make_batch_like(cfg)
    model.train()
    loss = model(batch).loss
    loss.backward()
    grads_finite = all(torch.isfinite(p.grad.to_local()).all() for p in model.parameters())
    torch.save(
        {"full": full, "local": local, "still_meta": still_meta, "loss": float(loss.detach()),
         "grads_finite": grads_finite},
        os.path.join(out, f"rank{rank}.pt"),
    )  # fmt: skip
    torch.distributed.destroy_process_group()
    os._exit(0)  # no interpreter teardown with gloo work referenced (see tests/test_fsdp.py)


def make_batch_like(cfg: ExperimentConfig) -> dict[str, torch.Tensor]:
    return PAPER.make_batch(cfg, 1, torch.device("cpu"))


@pytest.mark.slow
def test_fsdp_materialises_only_each_ranks_half_of_a_meta_built_paper_model(tmp_path) -> None:
    """Deferred initialisation at Molmo2-4B widths (2560 / 1152 wide, 32×128 q / 8 kv heads, SwiGLU
    9728, MLP 4304; 3 ViT blocks (STTS at block 0) and 1 LM block, vocabulary 8192, so it runs
    on CPU): sharded on meta,
    each of 2 gloo ranks allocates half of every parameter (dim-0 shards), never the whole model;
    the materialised model trains a step (same loss on both ranks: the batch and the all-gathered
    weights are the same; finite gradients)."""
    import torch.multiprocessing as mp

    from tests.cell_fixtures import free_port

    mp.spawn(_meta_fsdp_rank, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    full = ranks[0]["full"]
    numel = {name: math.prod(shape) for name, shape in full.items()}
    assert sum(numel.values()) > 2e8 and full == ranks[1]["full"]
    for r in ranks:
        assert r["still_meta"] and r["grads_finite"]
    for name, shape in full.items():  # dim-0 chunks of ceil(rows / 2) rows
        shards = [r["local"][name] for r in ranks]
        row = numel[name] // shape[0]
        assert sum(shards) == numel[name] and max(shards) == -(-shape[0] // 2) * row, name
    for r in ranks:  # every large matrix split: each rank holds half the model, not all of it
        assert sum(r["local"].values()) < 0.51 * sum(numel.values())
    assert math.isfinite(ranks[0]["loss"]) and ranks[0]["loss"] == ranks[1]["loss"]


def test_paper_shape_smoke_measures_every_setting_and_profiles(tmp_path):
    """benchmarks/paper_shape.py --smoke --profile: every frames × topk setting measured, the packed
    blocks equal to the per-frame run, the analytic speed-up the FLOPs model's, the profile split
    into parts (STTS's packed blocks and scorer present, the unpruned model's absent)."""
    from tests.test_benchmarks_smoke import run_smoke

    text = run_smoke("paper_shape.py", tmp_path, "--profile")
    assert "Machine:" in text and "## Profile: 4 frames, topk 0.5" in text
    state = json.loads((tmp_path / "paper_shape.json").read_text())
    assert state["complete"] and not state["skipped"]
    order = [(r["frames"], r["ratio"]) for r in state["rows"]]  # ratio-major, 0.5 first
    assert order == [(f, r) for r in (0.5, 0.3, 0.7) for f in (4, 8)]
    rows = {(r["frames"], r["ratio"]): r for r in state["rows"]}
    sections = PAPER.preset_sections(smoke=True)
    for (frames, ratio), row in rows.items():
        ref = analytic_flops(PAPER.bench_config(sections, frames, 0.0, 16)).total
        cand = analytic_flops(PAPER.bench_config(sections, frames, ratio, 16)).total
        assert row["analytic"]["even"] == ref / cand
        assert row["packing"]["rel_diff"] < 1e-5
        for kind in ("train", "prefill"):
            assert row[kind]["pairs"] == 2 and row[kind]["candidate_s"] > 0
    profile = rows[(4, 0.5)]["profile"]
    for kind in ("prefill", "train"):
        stts, unpruned = profile["stts"][kind]["ms"], profile["unpruned"][kind]["ms"]
        assert stts["vit_packed"] > 0 and stts["scorer"] > 0 and stts["llm"] > 0
        assert unpruned["vit_packed"] == unpruned["scorer"] == 0 and unpruned["vit"] > 0
    assert profile["stts"]["train"]["ms"]["rest"] > 0  # the backward
