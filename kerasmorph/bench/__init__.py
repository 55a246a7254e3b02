"""`kerasmorph bench`: KerasCV against kerasmorph (and diffusers) in one run.

Every TensorFlow variant runs in this process on ONE set of weights (real
weights when `kerasmorph.weights.find_weights` finds them, else the full-size
KerasCV architecture with random weights, built with `download_weights=False`
— same FLOPs as the real model), on the same encodings and the same noise:

- `kerascv`: `keras_cv.models.StableDiffusion.generate_image` as shipped:
  `jit_compile=True`, two `predict_on_batch` UNet calls per step, float32.
- `kerasmorph-float32`: `Explorer.denoise` + `Explorer.decode`, float32, XLA
  (same precision as KerasCV).
- `kerasmorph-<precision>`: the same at `precision` (default `"auto"`: the
  device's fastest safe setting).
- `diffusers-float32`, `diffusers-bfloat16`: optional: diffusers'
  `UNet2DConditionModel` from the SD config with random weights, one bs-2B call
  per guided step (PyTorch CPU, in a subprocess so its memory is returned).

How the time is taken: the first generation of each variant is the warm-up
(compilation and first-call costs; reported as `first_call_s`, and
`compile_s` = first call − median warm generation). Then `rounds` rounds run
the variants round-robin, one whole generation (B images, `num_steps` steps,
decode included) per variant per round. Decode time is measured inside each
generation (KerasCV's decoder is wrapped by a timer; kerasmorph calls
`decode` separately), so:

    s_per_frame      = generation time / B                  (decode included)
    s_per_image_step = (generation time − decode time) / (num_steps · B)

KerasCV's generation also re-encodes the empty prompt on every call; that
~0.15 s counts as step time, as it does for a KerasCV user. diffusers runs the
UNet alone: its s_per_image_step is one guided UNet call / B.
Speed is reported, never asserted: timings on a shared machine vary ±20%.

Modules: `config` (`BenchConfig`, its validation), `variants` (the Explorers
and the KerasCV model on one set of weights, the timed variants, the rounds),
`diffusers` (diffusers' UNet, timed in a subprocess), `report` (timing
summaries, RSS, the report's entries and its table); `run_bench` ties them.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

from kerasmorph.bench.config import COMPARE, MODELS, PROMPT, BenchConfig, check_config
from kerasmorph.bench.diffusers import DIFFUSERS_HINT, diffusers_in_subprocess, run_diffusers
from kerasmorph.bench.report import (
    add_diffusers,
    current_rss_gib,
    format_table,
    headline,
    peak_rss_gib,
    summarize,
    variant_result,
)
from kerasmorph.bench.time_to_quality import quality_report, read_quality_rows, steps_to_quality
from kerasmorph.bench.variants import (
    build_explorers,
    build_quality_variants,
    build_variants,
    time_variants,
)

__all__ = [
    "COMPARE",
    "DIFFUSERS_HINT",
    "MODELS",
    "PROMPT",
    "BenchConfig",
    "current_rss_gib",
    "format_table",
    "peak_rss_gib",
    "run_bench",
    "run_diffusers",
    "summarize",
]


def run_bench(
    config: BenchConfig, log: Callable[[str], None] = lambda message: None
) -> dict[str, Any]:
    """Runs the benchmark `config` describes; returns the report as a dict.

    Args:
        config: the `BenchConfig`.
        log: called with one line per phase (the CLI prints them on stderr).

    Returns:
        A JSON-ready dict: `config`, `device`, `precision_plan`, `variants`
        (per variant: `s_per_image_step`, `s_per_frame`, `decode_s_per_frame`,
        `first_call_s`, `compile_s`, `retraces`, rounds), the ratios
        `speedup_vs_kerascv` (KerasCV s per frame / kerasmorph fast s per
        frame), `speedup_same_precision` (KerasCV / kerasmorph float32, per
        frame), the same two per image-step, `retraces` (kerasmorph step
        traces after warm-up, all variants), `s_per_image_step` (the fast
        variant's), `peak_rss_gib`, the load average before and after.

    Raises:
        ValueError: for an unknown model, comparison or size.
    """
    from kerasmorph import devices

    preset, img_height, img_width = check_config(config)
    device = devices.detect_device()
    batch_size = config.batch_size or devices.default_batch_size(img_height, img_width, device)
    load_before = os.getloadavg()
    report: dict[str, Any] = {
        "config": dataclasses.asdict(
            dataclasses.replace(
                config, img_height=img_height, img_width=img_width, batch_size=batch_size
            )
        ),
        "device": device,
        "load_average_before": load_before,
        "timing": "s_per_frame = generation (B images, decode incl.) / B; "
        "s_per_image_step = (generation - decode) / (steps * B); median over rounds",
    }

    quality = None
    if config.quality_rows is not None:
        # Read before anything is built: a wrong file fails in a second, not after the build.
        source, rows = read_quality_rows(config.quality_rows, config.model)
        quality = (source, *steps_to_quality(rows))

    diffusers_report = None
    if "diffusers" in config.compare:
        log("timing diffusers' UNet in a subprocess")
        diffusers_report = diffusers_in_subprocess(
            config.model, img_height, img_width, batch_size, config.num_rounds
        )

    start = time.perf_counter()
    base, fast, weights = build_explorers(config, img_height, img_width, log)
    report["build_s"] = time.perf_counter() - start
    report["weights"] = weights
    report["rss_after_build_gib"] = current_rss_gib()
    report["precision_plan"] = fast.precision_plan.to_json()

    variants, skipped = build_variants(
        config, preset, base, fast, img_height, img_width, batch_size
    )
    quality_variants = []
    if quality is not None:
        quality_variants = build_quality_variants(fast, quality[2], config.seed, batch_size)
    time_variants(variants + quality_variants, config.num_rounds, log)
    results = {v.name: variant_result(v, config.num_steps, batch_size) for v in variants}
    for variant in quality_variants:
        results[variant.name] = variant_result(variant, variant.describe["num_steps"], batch_size)
    add_diffusers(report, results, skipped, diffusers_report)
    report["variants"] = results
    report["skipped"] = skipped
    report.update(headline(results, variants))
    if quality is not None:
        report["retraces"] += sum(results[v.name]["retraces"] or 0 for v in quality_variants)
        report["time_to_quality"] = quality_report(*quality, results)
    return report
