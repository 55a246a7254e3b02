"""`kerasmorph bench`: runs on tiny and prints its report; speed is never asserted."""

import json

import pytest

from kerasmorph import bench, cli

# One Session per file, as a notebook keeps one: the model is built once and reused.
_SESSION = cli.Session()


def main(argv, session=_SESSION):
    return cli.main(argv, session=session)


def test_summarize():
    summary = bench.summarize([2.0, 1.0, 4.0])
    assert summary == {"median": 2.0, "min": 1.0, "max": 4.0, "spread": 1.5}


def test_run_bench_validates_its_config():
    with pytest.raises(ValueError, match="model.*Received: model='sd3'"):
        bench.run_bench(bench.BenchConfig(model="sd3"))
    with pytest.raises(ValueError, match="compare"):
        bench.run_bench(bench.BenchConfig(model="tiny", compare=("onnx",)))
    with pytest.raises(ValueError, match="img_height"):
        bench.run_bench(bench.BenchConfig(model="tiny", img_height=100))


def test_bench_tiny_prints_a_table_and_json(capsys):
    argv = ["bench", "--model", "tiny", "--steps", "2", "--rounds", "1", "--json"]
    assert main([*argv, "--compare", "diffusers"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    for key in ("speedup_vs_kerascv", "speedup_same_precision", "retraces", "s_per_image_step"):
        assert key in report
    assert report["retraces"] == 0
    assert set(report["variants"]) == {"kerascv", "kerasmorph-float32", "kerasmorph-auto"}
    for variant in report["variants"].values():
        assert variant["s_per_image_step"] > 0 and variant["s_per_frame"] > 0
        assert variant["first_call_s"] > 0
    assert report["speedup_vs_kerascv"] > 0 and report["speedup_same_precision"] > 0
    assert "needs --model sd1 or sd2" in report["skipped"]["diffusers"]
    assert report["peak_rss_gib"] > 0
    assert any(line.startswith("| kerascv |") for line in lines)
