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


QUALITY_ROWS = [
    {"model": "tiny", "scheduler": "ddim", "steps": 5, "distance": 0.5},
    {"model": "tiny", "scheduler": "ddim", "steps": 50, "distance": 0.1},
    {"model": "tiny", "scheduler": "euler", "steps": 3, "distance": 0.3},
    {"model": "tiny", "scheduler": "euler", "steps": 4, "distance": 0.09},
    {"model": "tiny", "scheduler": "euler", "steps": 50, "distance": 0.02},
    {"model": "tiny", "scheduler": "heun", "steps": 5, "distance": 0.4},
    {"model": "tiny", "scheduler": "heun", "steps": 50, "distance": 0.2},
    {"model": "shapes", "scheduler": "ddim", "steps": 50, "distance": 0.07},
]


def test_steps_to_quality_picks_the_fewest_steps_at_ddim_50s_distance():
    from kerasmorph.bench import time_to_quality

    target, steps = time_to_quality.steps_to_quality(QUALITY_ROWS[:-1])
    assert target == 0.1
    by_name = {step.scheduler: step for step in steps}
    assert (by_name["ddim"].steps, by_name["euler"].steps) == (50, 4)
    assert by_name["euler"].distance == 0.09
    # Never reached: no step count, the best distance measured.
    assert by_name["heun"].steps is None and by_name["heun"].distance == 0.2
    with pytest.raises(ValueError, match="no ddim row at 50 steps"):
        time_to_quality.steps_to_quality([row for row in QUALITY_ROWS if row["steps"] != 50])


def test_quality_rows_are_read_for_the_bench_model(tmp_path):
    from kerasmorph.bench import time_to_quality

    path = tmp_path / "quality.json"
    path.write_text(json.dumps(QUALITY_ROWS))
    model, rows = time_to_quality.read_quality_rows(str(path), "tiny")
    assert model == "tiny" and len(rows) == 7
    with pytest.raises(ValueError, match=r"rows for shapes, tiny, none for .*'sd1'"):
        time_to_quality.read_quality_rows(str(path), "sd1")
    path.write_text('{"a": 1}')
    with pytest.raises(ValueError, match="no quality rows"):
        time_to_quality.read_quality_rows(str(path), "tiny")
    path.write_text("[")
    with pytest.raises(ValueError, match="is not JSON"):
        time_to_quality.read_quality_rows(str(path), "tiny")


def test_bench_times_each_scheduler_at_its_steps_to_quality(tmp_path, capsys):
    path = tmp_path / "quality.json"
    path.write_text(json.dumps(QUALITY_ROWS))
    argv = ["bench", "--model", "tiny", "--height", "64", "--width", "64", "--steps", "2"]
    argv += ["--rounds", "1", "--batch-size", "1", "--json", "--time-to-quality", str(path)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    # Each reached scheduler was timed at its own step count, in the same rounds.
    for name, steps in (("ddim", 50), ("euler", 4)):
        variant = report["variants"][f"quality:{name}@{steps}"]
        assert (variant["scheduler"], variant["num_steps"]) == (name, steps)
        assert len(variant["rounds_s"]) == 1
    assert not any(name.startswith("quality:heun") for name in report["variants"])
    rows = {row["scheduler"]: row for row in report["time_to_quality"]["schedulers"]}
    assert rows["ddim"]["speedup_vs_ddim50"] == 1.0
    ddim, euler = (
        report["variants"][f"quality:{n}"]["s_per_frame"] for n in ("ddim@50", "euler@4")
    )
    assert rows["euler"]["speedup_vs_ddim50"] == pytest.approx(ddim / euler)
    assert rows["heun"]["s_per_frame"] is None
    assert report["retraces"] == 0
    assert any(line.startswith("| heun | not reached in ≤ 50 | best 0.200") for line in lines)
    # A wrong file is one line, before any model is built.
    assert main([*argv[:-1], str(tmp_path / "missing.json")]) != 0
    assert "missing.json" in capsys.readouterr().err
