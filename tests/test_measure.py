"""Bookkeeping of the time/memory measurement helpers (no assertions about speed)."""

from __future__ import annotations

import math
import time

import pytest
import torch

from core.efficiency import hardware_info, measure_model, measure_step, peak_memory_info
from core.efficiency import measure as M


def test_sleep_is_timed_at_least_its_duration_and_calls_are_counted():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.02)

    out = measure_step(fn, warmup=2, iters=3, device="cpu")
    assert len(calls) == 5  # warm-up calls run but are not timed
    assert out["iters"] == 3
    assert out["min_s"] >= 0.02 and out["mean_s"] >= out["min_s"]
    assert out["std_s"] >= 0
    with pytest.raises(ValueError, match="iters"):
        measure_step(fn, warmup=0, iters=0)


def _alloc_200mb():
    x = torch.ones(200 * 2**20 // 4, dtype=torch.float32)  # 200 MiB, touched
    assert float(x[-1]) == 1.0
    del x


def test_cpu_peak_rises_by_an_allocation():
    idle = peak_memory_info(lambda: None, "cpu")
    busy = peak_memory_info(_alloc_200mb, "cpu")
    assert busy["method"] in ("vmhwm", "rss_sampling")
    assert 170 <= busy["peak_memory_mb"] - idle["peak_memory_mb"] <= 260
    # after the allocation is freed, a fresh measurement no longer reports it (the mark was reset)
    again = peak_memory_info(lambda: None, "cpu")
    assert again["peak_memory_mb"] - idle["peak_memory_mb"] < 100


def test_rss_sampling_fallback_sees_the_allocation(monkeypatch):
    monkeypatch.setattr(M, "_reset_hwm", lambda: False)

    def slow_alloc():
        x = torch.ones(200 * 2**20 // 4)
        time.sleep(0.05)  # the sampler polls every millisecond
        del x

    idle = peak_memory_info(lambda: None, "cpu")
    busy = peak_memory_info(slow_alloc, "cpu")
    assert idle["method"] == busy["method"] == "rss_sampling"
    assert 170 <= busy["peak_memory_mb"] - idle["peak_memory_mb"] <= 260


def test_measure_model_keys_and_peak_of_train_step():
    model = torch.nn.Linear(16, 16)
    x = torch.randn(4, 16)

    def forward():
        with torch.no_grad():
            model(x)

    def train_step():
        model.zero_grad()
        model(x).sum().backward()
        _alloc_200mb()

    out = measure_model(forward, train_step, warmup=1, iters=2, device="cpu")
    assert out["timer"] == "perf_counter" and out["method"] in ("vmhwm", "rss_sampling")
    assert out["forward_s"] > 0 and out["forward_backward_s"] > 0
    assert out["peak_memory_mb"] - out["forward_peak_memory_mb"] >= 150
    fwd_only = measure_model(forward, None, warmup=0, iters=1, device="cpu")
    assert math.isnan(fwd_only["forward_backward_s"])
    assert fwd_only["peak_memory_mb"] == fwd_only["forward_peak_memory_mb"]


def test_hardware_info_cpu():
    info = hardware_info("cpu")
    assert info["device"] == "cpu" and info["device_name"]
    assert info["threads"] == torch.get_num_threads()
    assert info["torch"] == torch.__version__ and info["hostname"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_peak_and_events():
    dev = torch.device("cuda")

    def alloc():
        x = torch.empty(256 * 2**20, dtype=torch.uint8, device=dev)
        x.fill_(1)
        del x

    idle = peak_memory_info(lambda: None, dev)
    busy = peak_memory_info(alloc, dev)
    assert busy["method"] == "cuda_max_allocated"
    assert busy["peak_memory_mb"] - idle["peak_memory_mb"] == pytest.approx(256, abs=2)
    out = measure_step(lambda: torch.cuda._sleep(10_000_000), warmup=1, iters=2, device=dev)
    assert out["min_s"] > 0
    assert hardware_info(dev)["device"] == "cuda"


def test_side_by_side_alternates_order_and_takes_the_median_ratio(monkeypatch):
    from core.efficiency import side_by_side as S

    calls: list[str] = []
    cost = {"cand": 1.0, "ref": 3.0}

    def fake_time(fn, device):
        fn()
        name = calls[-1]
        # a busy machine in the middle: both models slow down 4× for one pair
        busy = 4.0 if sum(c == name for c in calls) == 3 else 1.0
        return cost[name] * busy

    monkeypatch.setattr(S, "time_call", fake_time)
    out = S.compare_interleaved(
        lambda: calls.append("cand"), lambda: calls.append("ref"), warmup=1, iters=4
    )
    assert calls[:2] == ["cand", "ref"]  # warm-up: both, untimed
    assert calls[2:] == ["cand", "ref", "ref", "cand", "cand", "ref", "ref", "cand"]  # A B B A
    assert out["pairs"] == 4 and out["speedup"] == pytest.approx(3.0)
    assert out["speedup_q1"] == out["speedup_q3"] == pytest.approx(3.0)  # load hit both alike
    assert out["candidate_s"] == pytest.approx(1.0) and out["reference_s"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="iters"):
        S.compare_interleaved(lambda: None, lambda: None, iters=0)
