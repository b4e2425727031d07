"""The VLM wrapper across the four archs: token counts under pruning, images, overfitting."""

from __future__ import annotations

import pytest
import torch

from core import budget
from core.models.vlm import VideoVLM
from core.training.evaluate import evaluate
from tests.helpers_model import tiny_config, video_batch

ARCHS = ["joint_decoder", "cross_attention", "mot", "moma"]
VOCAB = 20


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(
    ("method", "ratio"),
    [("none", 0.0), ("random", 0.5), ("scorer", 0.7), ("easy", 0.3), ("heuristic", 0.5)],
)
def test_every_arch_receives_exactly_the_budgeted_tokens(arch, method, ratio):
    torch.manual_seed(0)
    cfg = tiny_config(fusion={"arch": arch}, pruning={"method": method, "ratio": ratio})
    model = VideoVLM(cfg, VOCAB)
    batch = video_batch(cfg, batch=2, vocab=VOCAB)
    batch["frame_mask"][1, -1] = False
    out = model(batch)
    kept = budget.kept_tokens(4, 4, ratio if method != "none" else 0.0)
    assert out.visual.num_tokens == kept
    assert model.fusion.num_residual_visual_tokens(kept) == budget.residual_visual_tokens(
        arch, kept
    )
    assert out.logits.shape == (2, cfg.data.max_text_len, VOCAB)
    assert torch.isfinite(out.loss)
    out.loss.backward()


@pytest.mark.parametrize("arch", ARCHS)
def test_images_go_through_the_same_wrapper_unpruned(arch):
    torch.manual_seed(0)
    cfg = tiny_config(fusion={"arch": arch}, pruning={"method": "scorer", "ratio": 0.5})
    model = VideoVLM(cfg, VOCAB)
    batch = video_batch(cfg, batch=2, vocab=VOCAB)
    image_batch = {**batch, "pixel_values": batch["pixel_values"][:, 0]}
    del image_batch["frame_mask"]
    out = model(image_batch)
    assert out.visual.num_tokens == 4  # one frame, P′ = 4, never pruned
    assert out.visual.aux_loss is None
    assert torch.isfinite(out.loss)


def _overfit_batch(cfg, n: int = 4) -> dict:
    """n clips; the answer token is a function of the clip, so only vision can solve it."""
    gen = torch.Generator().manual_seed(1)
    batch = video_batch(cfg, batch=n, vocab=VOCAB)
    t = cfg.data.max_text_len
    ids = torch.full((n, t), 0)
    ids[:, 0] = 2  # bos
    ids[:, 1:4] = torch.tensor([5, 6, 7])  # the same question for every clip
    answers = torch.arange(n) + 10
    ids[:, 4] = answers
    ids[:, 5] = 3  # eos
    labels = torch.full((n, t), -100)
    labels[:, 3] = answers
    labels[:, 4] = 3
    text_mask = torch.zeros(n, t, dtype=torch.bool)
    text_mask[:, :6] = True
    pixels = torch.randn(
        n, cfg.data.max_frames, 3, cfg.data.frame_size, cfg.data.frame_size, generator=gen
    )
    batch.update(
        input_ids=ids,
        labels=labels,
        text_mask=text_mask,
        pixel_values=pixels,
        question_type=["which"] * n,
        sample_valid=torch.ones(n, dtype=torch.bool),
    )
    return batch


@pytest.mark.parametrize("arch", ARCHS)
def test_each_arch_overfits_a_handful_of_clips(arch):
    torch.manual_seed(0)
    cfg = tiny_config(fusion={"arch": arch}, pruning={"method": "scorer", "ratio": 0.5})
    model = VideoVLM(cfg, VOCAB)
    batch = _overfit_batch(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(150):
        model.train()
        loss = model(batch, step=step).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    result = evaluate(model, [batch], torch.device("cpu"))
    assert result["accuracy"] == 1.0, (arch, result, float(loss))
