"""The timed variants: the Explorers and the KerasCV model on one set of weights, and the rounds."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from kerasmorph.bench.config import PROMPT, BenchConfig
from kerasmorph.bench.report import current_rss_gib


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
class Variant:
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


def build_explorers(config: BenchConfig, img_height: int, img_width: int, log):
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
        weights = (
            "real weights"
            if real
            else "trained, shipped"
            if preset.architecture == "shapes"
            else f"seeded random ({config.model})"
        )
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


def _explorer_variant(
    name: str, explorer, encodings, noise, num_steps: int, scheduler: str = "ddim"
) -> Variant:
    batch_size = len(noise)

    def run():
        start = time.perf_counter()
        latents = explorer.denoise(
            noise, encodings, num_steps=num_steps, batch_size=batch_size, scheduler=scheduler
        )
        middle = time.perf_counter()
        explorer.decode(latents, batch_size=batch_size)
        end = time.perf_counter()
        return end - start, end - middle

    plan = explorer.precision_plan
    return Variant(
        name,
        run,
        {
            "library": "kerasmorph",
            "unet_policy": plan.diffusion_model,
            "step_jit_compile": plan.jit_compile,
            "decoder_jit_compile": plan.decoder_jit_compile,
            "unet_rows_per_call": 2 * batch_size,
            "scheduler": scheduler,
            "num_steps": num_steps,
        },
        traces=lambda: explorer.sampler.num_traces,
    )


def _kerascv_variant(model, encodings, noise, num_steps: int) -> Variant:
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

    return Variant(
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


def build_variants(
    config: BenchConfig, preset, base, fast, img_height: int, img_width: int, batch_size: int
) -> tuple[list[Variant], dict[str, str]]:
    """The timed variants (KerasCV first when the size allows it) and the skipped ones."""
    encoding = base.encode_text(PROMPT)
    encodings = np.repeat(encoding, batch_size, axis=0)
    noise = base.noise(batch_size, config.seed)
    steps, scheduler = config.num_steps, config.scheduler
    variants = [_explorer_variant("kerasmorph-float32", base, encodings, noise, steps, scheduler)]
    if config.precision != "float32":
        name = f"kerasmorph-{config.precision}"
        variants.append(_explorer_variant(name, fast, encodings, noise, steps, scheduler))
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


def build_quality_variants(fast, steps, seed: int, batch_size: int) -> list[Variant]:
    """One variant per scheduler of `steps` (`QualityStep`s) at its step count, on `fast`."""
    from kerasmorph.bench.time_to_quality import variant_name

    encodings = np.repeat(fast.encode_text(PROMPT), batch_size, axis=0)
    noise = fast.noise(batch_size, seed)
    return [
        _explorer_variant(
            variant_name(step), fast, encodings, noise, step.steps, scheduler=step.scheduler
        )
        for step in steps
        if step.steps is not None
    ]


def time_variants(variants: list[Variant], num_rounds: int, log) -> None:
    """One warm-up generation per variant, then `num_rounds` round-robin rounds.

    Traces are counted once every variant is warm: variants sharing an
    Explorer (the time-to-quality ones) compile their own step kinds during
    their own warm-up, which is not a retrace of the others.
    """
    for variant in variants:
        log(f"warm-up (compiles): {variant.name}")
        variant.first_call_s = variant.run()[0]
        variant.rss_after_warmup_gib = current_rss_gib()
    for variant in variants:
        variant.traces_after_warmup = variant.traces()
    for round_index in range(num_rounds):
        log(f"round {round_index + 1}/{num_rounds}")
        for variant in variants:
            total, decode = variant.run()
            variant.totals.append(total)
            variant.decodes.append(decode)
            gc.collect()
