"""The benchmark's arithmetic and report (speed itself is measured by `dfwatch bench`, never
asserted in a test)."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from daemon.benchmarks.measure import timed
from daemon.benchmarks.cpu import markdown
from daemon.benchmarks.stages import matmul_ceiling, per_frame_cost, window_economics


def stages():
    rows = []
    for name, gflops, seconds in (("pSp level 9 (per face)", 72.9, 0.5), ("pSp all 18 levels (per face)", 145.0, 1.0),
                                  ("3D ResNet-50 16x112x112 (per clip)", 44.0, 0.3), ("head (per window)", 0.1, 0.01),
                                  ("DLDFD 224x224 (per face)", 4.6, 0.04)):
        rows.append({"stage": name, "backend": "onnxruntime", "seconds": seconds, "gflops": gflops,
                     "gflops_per_s": gflops / seconds, "of_ceiling": gflops / seconds / 150})
    return rows


def test_window_economics_counts_what_each_verdict_costs():
    bundle = SimpleNamespace(frames=32, clip_frames=16)
    e = window_economics(bundle, stages(), {"640x480": 10.0}, stride=8)
    assert e["incremental_gflops"] == pytest.approx(8 * 72.9 + 44.0 + 0.1)
    assert e["naive_gflops"] == pytest.approx(32 * 145.0 + 2 * 44.0 + 0.1)
    assert e["flops_ratio"] == pytest.approx(e["naive_gflops"] / e["incremental_gflops"])
    assert e["incremental_s"] == pytest.approx(8 * (0.5 + 0.01) + 0.3 + 0.01)


def test_per_frame_cost_compares_the_families():
    f = per_frame_cost(stages(), {"640x480": 20.0}, stride=8)
    assert f["stylegru_gflops"] == pytest.approx(72.9 + 44.0 / 8) and f["dldfd_gflops"] == pytest.approx(4.6)
    assert f["stylegru_s"] == pytest.approx(0.02 + 0.5 + 0.3 / 8) and f["dldfd_s"] == pytest.approx(0.06)
    assert f["model_time_ratio"] == pytest.approx((0.5 + 0.3 / 8) / 0.04)
    assert f["frame_time_ratio"] == pytest.approx(f["stylegru_s"] / 0.06)
    only_dldfd = per_frame_cost([r for r in stages() if r["stage"].startswith("DLDFD")], {"640x480": 20.0}, 8)
    assert "frame_time_ratio" not in only_dldfd and only_dldfd["dldfd_s"] == pytest.approx(0.06)


def test_ceiling_and_report_render():
    ceiling = matmul_ceiling(threads=1, n=256)
    assert ceiling["gflops"] > 0 and ceiling["threads"] == 1
    calls = []
    slept = timed(lambda: (calls.append(1), time.sleep(0.02)), 3, warmup=1)
    assert len(calls) == 4 and 0.018 <= slept < 0.5  # warm-up excluded, median of what each call took
    result = {"machine": "test", "ceiling": ceiling, "stages": stages(), "decode": {"video": "v.mp4", "fps": 500.0},
              "detect_width": 320, "mtcnn_ms": {"640x480": 12.0, "1280x720": 14.0},
              "economics": window_economics(SimpleNamespace(frames=32, clip_frames=16), stages(),
                                            {"640x480": 12.0}, 8),
              "per_frame": per_frame_cost(stages(), {"640x480": 12.0}, 8),
              "end_to_end": [{"family": "dldfd", "streams": 1, "analysed_fps_per_stream": {"s0": 5.9},
                              "analysed_fps_total": 5.9, "dropped": {}, "latency_ms": {"p50": 900.0, "p95": 1200.0,
                                                                                       "p99": 1300.0},
                              "peak_rss_mb": {"infer": 700.0}},
                             {"family": "stylegru", "streams": 1, "analysed_fps_per_stream": {"s0": 1.8},
                              "analysed_fps_total": 1.8,
                              "dropped": {}, "latency_ms": {"p50": 2000.0, "p95": 3000.0, "p99": 3500.0},
                              "peak_rss_mb": {"infer": 1500.0}},
                             {"family": "stylegru", "streams": 2, "error": "no steady state reached"}]}
    text = markdown(result)
    assert "| pSp level 9 (per face) | onnxruntime | 500 ms | 72.9 | 146 |" in text
    assert "fewer FLOPs" in text and "| stylegru | 1 | 1.80 | 1.80 |" in text and "no steady state" in text
    assert "| dldfd | 1 | 5.90 | 5.90 |" in text and "less time** for DLDFD" in text
