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
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

PROMPT = "a photograph of an astronaut riding a horse"
MODELS = ("tiny", "sd1", "sd2")
COMPARE = ("diffusers",)
DIFFUSERS_HINT = "pip install torch==2.13.0 diffusers"
_NEEDS_SD = "diffusers comparison needs --model sd1 or sd2. Received: --model {model}"

# The UNet configurations of runwayml/stable-diffusion-v1-5 and
# stabilityai/stable-diffusion-2-1 (unet/config.json), inlined so nothing downloads.
_DIFFUSERS_UNET = {
    "sd1": dict(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
        act_fn="silu",
        norm_num_groups=32,
        norm_eps=1e-5,
        flip_sin_to_cos=True,
        freq_shift=0,
        downsample_padding=1,
        mid_block_scale_factor=1,
    ),
}
_DIFFUSERS_UNET["sd2"] = dict(
    _DIFFUSERS_UNET["sd1"],
    sample_size=96,
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),
    use_linear_projection=True,
)


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What `run_bench` measures.

    Attributes:
        model: preset, one of `MODELS`.
        img_height, img_width: image size in pixels (None: 256 for sd1/sd2,
            the preset's default for tiny). KerasCV rounds sizes to multiples
            of 128, so its variant needs one.
        num_steps: denoising steps per generation.
        batch_size: images per generation (None: the device's default batch
            for this size, `kerasmorph.devices.default_batch_size`).
        precision: precision of kerasmorph's fast variant ("auto" default).
        num_rounds: timed rounds after the warm-up.
        compare: other libraries to time too: () or ("diffusers",).
        weights_dir: searched first for real weight files.
        seed: noise seed.
    """

    model: str = "sd1"
    img_height: int | None = None
    img_width: int | None = None
    num_steps: int = 5
    batch_size: int | None = None
    precision: str = "auto"
    num_rounds: int = 3
    compare: tuple[str, ...] = ()
    weights_dir: str | None = None
    seed: int = 0


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


class _TimedDecoder:
    """Stands in for KerasCV's decoder attribute and times `predict_on_batch`."""

    def __init__(self, decoder):
        self.decoder = decoder
        self.seconds = 0.0

    def predict_on_batch(self, latents):
        start = time.perf_counter()
        images = self.decoder.predict_on_batch(latents)
        self.seconds += time.perf_counter() - start
        return images


@dataclasses.dataclass
class _Variant:
    """A timed generation: `run()` returns (total seconds, decode seconds)."""

    name: str
    run: Callable[[], tuple[float, float]]
    describe: dict[str, Any]
    traces: Callable[[], int | None] = lambda: None
    totals: list[float] = dataclasses.field(default_factory=list)
    decodes: list[float] = dataclasses.field(default_factory=list)
    first_call_s: float = 0.0
    traces_after_warmup: int | None = None
    rss_after_warmup_gib: float = 0.0


# The components a text-to-image generation uses (the image encoder is never built).
_GENERATION_COMPONENTS = ("text_encoder", "diffusion_model", "decoder")


def _kerascv_model(
    preset, img_height: int, img_width: int, components: dict, jit_compile: bool, tokenizer=None
):
    """KerasCV's `StableDiffusion`(V2) holding `components` (the `tiny` ones in V1's loop)."""
    from kerasmorph.models import kerascv

    model = kerascv.build_kerascv_model(
        preset,
        img_height,
        img_width,
        jit_compile,
        kerascv_class=preset.kerascv_class or "StableDiffusion",
    )
    kerascv.attach_components(model, components, tokenizer=tokenizer)
    return model


def _cast_copy(
    model, preset, component: str, img_height: int, img_width: int, policy: str, seed: int
):
    """Builds `component` under `policy` holding `model`'s weights, cast once."""
    import tensorflow as tf

    from kerasmorph import models

    copy = models.build_component(
        preset, component, img_height, img_width, precision=policy, seed=seed
    )
    for target, source in zip(copy.weights, model.weights, strict=True):
        target.assign(tf.cast(source, target.dtype))
    return copy


def _build_explorers(config: BenchConfig, img_height: int, img_width: int, log):
    """Returns (float32 Explorer, fast Explorer, weights label), sharing weights."""
    import kerasmorph
    from kerasmorph import devices, models, presets
    from kerasmorph.weights import find_weights

    preset = presets.get_preset(config.model)
    needed = {k: v for k, v in preset.weight_files.items() if k != "image_encoder"}
    found = find_weights(needed, config.weights_dir) if needed else {}
    real = bool(needed) and all(found.values())
    common = dict(img_height=img_height, img_width=img_width, verbose=False)
    random_components = None
    weights_dir = config.weights_dir
    if needed and not real:
        log(f"building the full-size {config.model} architecture with random weights")
        random_components = {
            name: models.build_component(preset, name, img_height, img_width)
            for name in _GENERATION_COMPONENTS
        }
        weights_dir = None
        weights = "random (download_weights=False)"
    else:
        weights = "real weights" if real else f"seeded random ({config.model})"
    base = kerasmorph.Explorer(
        config.model,
        precision="float32",
        jit_compile=True,
        weights_dir=weights_dir,
        components=random_components,
        **common,
    )
    # The properties build (and load) each component on first use.
    built = {name: getattr(base, name) for name in _GENERATION_COMPONENTS}
    plan = devices.resolve_precision(config.precision)
    fast_components = {}
    for name, component in built.items():
        policy = getattr(plan, name)
        if policy != "float32":
            log(f"casting the {name} to {policy} once")
            component = _cast_copy(
                component, preset, name, img_height, img_width, policy, base.seed
            )
        fast_components[name] = component
    fast = kerasmorph.Explorer(
        config.model,
        precision=config.precision,
        weights_dir=weights_dir,
        components=fast_components,
        **common,
    )
    return base, fast, weights


def _explorer_variant(name: str, explorer, encodings, noise, num_steps: int) -> _Variant:
    batch_size = len(noise)

    def run():
        start = time.perf_counter()
        latents = explorer.denoise(noise, encodings, num_steps=num_steps, batch_size=batch_size)
        middle = time.perf_counter()
        explorer.decode(latents, batch_size=batch_size)
        end = time.perf_counter()
        return end - start, end - middle

    plan = explorer.precision_plan
    return _Variant(
        name,
        run,
        {
            "library": "kerasmorph",
            "unet_policy": plan.diffusion_model,
            "step_jit_compile": plan.jit_compile,
            "decoder_jit_compile": plan.decoder_jit_compile,
            "unet_rows_per_call": 2 * batch_size,
        },
        traces=lambda: explorer.sampler.num_traces,
    )


def _kerascv_variant(model, encodings, noise, num_steps: int) -> _Variant:
    from kerasmorph.models import kerascv

    timed = _TimedDecoder(model.decoder)
    kerascv.attach_components(model, {"decoder": timed})
    batch_size = len(noise)

    def run():
        timed.seconds = 0.0
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # Its progress bar.
            model.generate_image(
                encodings, batch_size=batch_size, num_steps=num_steps, diffusion_noise=noise
            )
        return time.perf_counter() - start, timed.seconds

    def traces():
        function = getattr(model.diffusion_model, "predict_function", None)
        counter = getattr(function, "experimental_get_tracing_count", None)
        return counter() if counter else None

    return _Variant(
        "kerascv",
        run,
        {
            "library": "keras_cv",
            "unet_policy": "float32",
            "step_jit_compile": True,
            "decoder_jit_compile": True,
            "unet_rows_per_call": batch_size,
        },
        traces=traces,
    )


def run_diffusers(
    model: str, img_height: int, img_width: int, batch_size: int, num_rounds: int
) -> dict[str, Any]:
    """Times diffusers' SD UNet (random weights) at bs 2·B, float32 then bfloat16.

    Runs in the calling process (`run_bench` starts it in a subprocess).

    Returns:
        {"diffusers-float32": {...}, "diffusers-bfloat16": {...}} with
        `s_per_image_step` = one guided UNet call / B, or {"skipped": reason}.
    """
    try:
        import diffusers
        import torch
    except ImportError as error:
        return {"skipped": f"{error}; {DIFFUSERS_HINT}"}
    if model not in _DIFFUSERS_UNET:
        return {"skipped": _NEEDS_SD.format(model=model)}
    torch.manual_seed(0)
    start = time.perf_counter()
    unet = diffusers.UNet2DConditionModel(**_DIFFUSERS_UNET[model]).eval()
    build_s = time.perf_counter() - start
    generator = torch.Generator().manual_seed(0)
    rows = 2 * batch_size
    sample = torch.randn(rows, 4, img_height // 8, img_width // 8, generator=generator)
    context = torch.randn(
        rows, 77, _DIFFUSERS_UNET[model]["cross_attention_dim"], generator=generator
    )
    timestep = torch.tensor(500)
    results: dict[str, Any] = {
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
        "build_s": build_s,
    }
    for dtype in ("float32", "bfloat16"):
        if dtype == "bfloat16":
            unet = unet.to(torch.bfloat16)  # In place: the float32 copy is freed.
        inputs = (sample.to(getattr(torch, dtype)), timestep, context.to(getattr(torch, dtype)))
        times = []
        with torch.inference_mode():
            for index in range(num_rounds + 1):
                start = time.perf_counter()
                output = unet(*inputs).sample
                times.append(time.perf_counter() - start)
        if not torch.isfinite(output.float()).all():
            raise FloatingPointError(f"diffusers {dtype} produced NaN/Inf")
        summary = summarize(times[1:])
        results[f"diffusers-{dtype}"] = {
            "library": "diffusers",
            "unet_policy": dtype,
            "unet_rows_per_call": rows,
            "first_call_s": times[0],
            "step_s": summary,
            "s_per_image_step": summary["median"] / batch_size,
            "s_per_image_step_spread": summary["spread"],
            "rounds_s": times[1:],
        }
    results["peak_rss_gib"] = peak_rss_gib()
    return results


def _diffusers_in_subprocess(
    model, img_height, img_width, batch_size, num_rounds
) -> dict[str, Any]:
    if model not in _DIFFUSERS_UNET:
        return {"skipped": _NEEDS_SD.format(model=model)}
    code = (
        "import json; from kerasmorph.bench import run_diffusers; "
        f"print(json.dumps(run_diffusers({model!r}, {img_height}, {img_width}, "
        f"{batch_size}, {num_rounds})))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        tail = completed.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"skipped": f"diffusers run failed: {tail[0]}"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _check_config(config: BenchConfig):
    """Validates `config`; returns (preset, img_height, img_width)."""
    from kerasmorph import presets
    from kerasmorph._checks import check_count, validate_image_size

    if config.model not in MODELS:
        raise ValueError(
            f"`model` must be one of {', '.join(MODELS)}. Received: model={config.model!r}"
        )
    unknown = sorted(set(config.compare) - set(COMPARE))
    if unknown:
        raise ValueError(f"`compare` accepts {COMPARE}. Received: compare={unknown}")
    for name in ("num_steps", "num_rounds"):
        check_count(name, getattr(config, name))
    preset = presets.get_preset(config.model)
    default_size = 256 if preset.weight_files else preset.default_size
    img_height = validate_image_size(
        "img_height", config.img_height or default_size, preset.size_multiple
    )
    img_width = validate_image_size(
        "img_width", config.img_width or default_size, preset.size_multiple
    )
    return preset, img_height, img_width


def _variants(
    config: BenchConfig, preset, base, fast, img_height: int, img_width: int, batch_size: int
) -> tuple[list[_Variant], dict[str, str]]:
    """The timed variants (KerasCV first when the size allows it) and the skipped ones."""
    encoding = base.encode_text(PROMPT)
    encodings = np.repeat(encoding, batch_size, axis=0)
    noise = base.noise(batch_size, config.seed)
    variants = [_explorer_variant("kerasmorph-float32", base, encodings, noise, config.num_steps)]
    if config.precision != "float32":
        variants.append(
            _explorer_variant(
                f"kerasmorph-{config.precision}", fast, encodings, noise, config.num_steps
            )
        )
    skipped = {}
    if img_height % 128 or img_width % 128:
        skipped["kerascv"] = (
            "KerasCV rounds image sizes to multiples of 128; use a size that is one"
        )
    else:
        components = {name: getattr(base, name) for name in _GENERATION_COMPONENTS}
        model = _kerascv_model(
            preset, img_height, img_width, components, True, tokenizer=base.tokenizer
        )
        # What KerasCV's own properties do when they build a component.
        components["diffusion_model"].compile(jit_compile=True)
        components["decoder"].compile(jit_compile=True)
        variants.insert(0, _kerascv_variant(model, encodings, noise, config.num_steps))
    return variants, skipped


def _time_variants(variants: list[_Variant], num_rounds: int, log) -> None:
    """One warm-up generation per variant, then `num_rounds` round-robin rounds."""
    for variant in variants:
        log(f"warm-up (compiles): {variant.name}")
        variant.first_call_s = variant.run()[0]
        variant.traces_after_warmup = variant.traces()
        variant.rss_after_warmup_gib = current_rss_gib()
    for round_index in range(num_rounds):
        log(f"round {round_index + 1}/{num_rounds}")
        for variant in variants:
            total, decode = variant.run()
            variant.totals.append(total)
            variant.decodes.append(decode)
            gc.collect()


def _variant_result(variant: _Variant, num_steps: int, batch_size: int) -> dict[str, Any]:
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


def _add_diffusers(
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


def _summary(results: dict[str, Any], variants: list[_Variant]) -> dict[str, Any]:
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

    preset, img_height, img_width = _check_config(config)
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

    diffusers_report = None
    if "diffusers" in config.compare:
        log("timing diffusers' UNet in a subprocess")
        diffusers_report = _diffusers_in_subprocess(
            config.model, img_height, img_width, batch_size, config.num_rounds
        )

    start = time.perf_counter()
    base, fast, weights = _build_explorers(config, img_height, img_width, log)
    report["build_s"] = time.perf_counter() - start
    report["weights"] = weights
    report["rss_after_build_gib"] = current_rss_gib()
    report["precision_plan"] = fast.precision_plan.to_json()

    variants, skipped = _variants(config, preset, base, fast, img_height, img_width, batch_size)
    _time_variants(variants, config.num_rounds, log)
    results = {v.name: _variant_result(v, config.num_steps, batch_size) for v in variants}
    _add_diffusers(report, results, skipped, diffusers_report)
    report["variants"] = results
    report["skipped"] = skipped
    report.update(_summary(results, variants))
    return report


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
    return "\n".join(lines)
