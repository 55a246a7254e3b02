"""The report: timing summaries, memory (RSS), the JSON entries and the Markdown table."""

from __future__ import annotations

import os
import resource
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from kerasmorph.bench.variants import Variant


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, GiB (`ru_maxrss`)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def current_rss_gib() -> float:
    """Resident memory now, GiB (psutil when present, else /proc)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**30
    except ImportError:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def summarize(values: list[float]) -> dict[str, float]:
    """Median, min, max and spread ((max − min) / median) of timings."""
    array = np.asarray(values, dtype=np.float64)
    median = float(np.median(array))
    return {
        "median": median,
        "min": float(array.min()),
        "max": float(array.max()),
        "spread": float((array.max() - array.min()) / median) if median else 0.0,
    }


def variant_result(variant: Variant, num_steps: int, batch_size: int) -> dict[str, Any]:
    """A timed variant's entry of the report's `variants`."""
    totals = summarize(variant.totals)
    decode = float(np.median(variant.decodes))
    steps = [
        (total - dec) / (num_steps * batch_size)
        for total, dec in zip(variant.totals, variant.decodes)
    ]
    traces = variant.traces()
    return {
        **variant.describe,
        "s_per_image_step": float(np.median(steps)),
        "s_per_image_step_spread": summarize(steps)["spread"],
        "s_per_frame": totals["median"] / batch_size,
        "s_per_frame_spread": totals["spread"],
        "decode_s_per_frame": decode / batch_size,
        "generation_s": totals,
        "first_call_s": variant.first_call_s,
        "compile_s": max(0.0, variant.first_call_s - totals["median"]),
        "traces": traces,
        "retraces": (
            None
            if traces is None or variant.traces_after_warmup is None
            else traces - variant.traces_after_warmup
        ),
        "rss_after_warmup_gib": variant.rss_after_warmup_gib,
        "rounds_s": variant.totals,
    }


def add_diffusers(
    report: dict[str, Any], results: dict[str, Any], skipped: dict[str, str], diffusers_report
) -> None:
    """Adds the diffusers subprocess's variants (or the reason it was skipped)."""
    if diffusers_report is None:
        return
    if "skipped" in diffusers_report:
        skipped["diffusers"] = diffusers_report["skipped"]
        return
    for key in ("diffusers-float32", "diffusers-bfloat16"):
        results[key] = diffusers_report[key]
    report["diffusers_peak_rss_gib"] = diffusers_report["peak_rss_gib"]
    report["diffusers_versions"] = diffusers_report["versions"]


def _ratio(numerator, denominator, key):
    if numerator is None or denominator is None:
        return None
    return numerator[key] / denominator[key]


def headline(results: dict[str, Any], variants: list[Variant]) -> dict[str, Any]:
    """The headline numbers: the fast variant's speed and the speed-ups."""
    fast_name = variants[-1].name
    fast_result = results[fast_name]
    same = results["kerasmorph-float32"]
    reference = results.get("kerascv")
    return dict(
        fast_variant=fast_name,
        s_per_image_step=fast_result["s_per_image_step"],
        s_per_frame=fast_result["s_per_frame"],
        speedup_vs_kerascv=_ratio(reference, fast_result, "s_per_frame"),
        speedup_same_precision=_ratio(reference, same, "s_per_frame"),
        step_speedup_vs_kerascv=_ratio(reference, fast_result, "s_per_image_step"),
        step_speedup_same_precision=_ratio(reference, same, "s_per_image_step"),
        step_ratio_vs_diffusers_bfloat16=_ratio(
            fast_result, results.get("diffusers-bfloat16"), "s_per_image_step"
        ),
        retraces=sum(results[v.name]["retraces"] or 0 for v in variants if v.name != "kerascv"),
        peak_rss_gib=peak_rss_gib(),
        load_average_after=os.getloadavg(),
    )


def _yes_no(value: bool | None) -> str:
    return "—" if value is None else ("yes" if value else "no")


def _dash(value: Any) -> str:
    return "—" if value is None else str(value)


def format_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table plus the ratios, for a terminal or a README."""
    config = report["config"]
    lines = [
        f"{config['model']} {config['img_height']}x{config['img_width']}, "
        f"{config['num_steps']} steps, batch {config['batch_size']} images "
        f"(CFG: 2 UNet rows each), {config['num_rounds']} rounds, {report['weights']}, "
        f"device {report['device']}, load average {report['load_average_before'][0]:.1f}",
        "",
        "| variant | UNet dtype | step XLA | s / image-step | s / frame (incl. decode) "
        "| decode s / frame | first call s | compile s | retraces |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in report["variants"].items():

        def number(key, digits=2):
            value = result.get(key)
            return "—" if value is None else f"{value:.{digits}f}"

        step = f"{result['s_per_image_step']:.2f} ±{50 * result['s_per_image_step_spread']:.0f}%"
        frame = (
            f"{result['s_per_frame']:.2f} ±{50 * result['s_per_frame_spread']:.0f}%"
            if "s_per_frame" in result
            else "— (UNet only)"
        )
        xla = result.get("step_jit_compile")
        lines.append(
            f"| {name} | {result['unet_policy']} | {_yes_no(xla)} "
            f"| {step} | {frame} | {number('decode_s_per_frame')} | {number('first_call_s', 1)} "
            f"| {number('compile_s', 1)} | {_dash(result.get('retraces'))} |"
        )
    lines.append("")

    def fmt(value):
        return "—" if value is None else f"{value:.2f}×"

    lines.append(
        f"per frame: {report['fast_variant']} vs KerasCV {fmt(report['speedup_vs_kerascv'])}, "
        f"float32 vs KerasCV {fmt(report['speedup_same_precision'])}; per image-step: "
        f"{fmt(report['step_speedup_vs_kerascv'])} and {fmt(report['step_speedup_same_precision'])}"
    )
    if report.get("step_ratio_vs_diffusers_bfloat16") is not None:
        lines.append(
            f"{report['fast_variant']} s/image-step ÷ diffusers bf16: "
            f"{report['step_ratio_vs_diffusers_bfloat16']:.2f}"
        )
    lines.append(
        f"retraces after warm-up: {report['retraces']}; peak RSS {report['peak_rss_gib']:.1f} GiB"
        + (
            f" (diffusers subprocess {report['diffusers_peak_rss_gib']:.1f} GiB)"
            if "diffusers_peak_rss_gib" in report
            else ""
        )
    )
    for name, reason in report["skipped"].items():
        lines.append(f"skipped {name}: {reason}")
    if "time_to_quality" in report:
        from kerasmorph.bench.time_to_quality import format_quality

        lines += ["", *format_quality(report["time_to_quality"])]
    return "\n".join(lines)
