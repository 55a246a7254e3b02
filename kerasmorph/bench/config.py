"""What `run_bench` measures: `BenchConfig`, its choices and their validation."""

from __future__ import annotations

import dataclasses

PROMPT = "a photograph of an astronaut riding a horse"
MODELS = ("tiny", "shapes", "sd1", "sd2")
COMPARE = ("diffusers",)


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
        scheduler: the scheduler of kerasmorph's variants (`kerasmorph.schedulers`;
            KerasCV's variant always runs its own DDIM). The UNet call per step
            is the same for every scheduler, so its time per image-step should
            not change (Heun makes 2 calls per step).
        quality_rows: a quality JSON file (`python -m kerasmorph.quality
            --json FILE`) measured on this model; when given, each scheduler
            in it is also timed at the step count where it reaches DDIM-50's
            distance to the reference (`kerasmorph.bench.time_to_quality`).
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
    scheduler: str = "ddim"
    quality_rows: str | None = None


def check_config(config: BenchConfig):
    """Validates `config`; returns (preset, img_height, img_width)."""
    from kerasmorph import presets, schedulers
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
    if config.scheduler not in schedulers.SCHEDULERS:
        valid = ", ".join(repr(name) for name in schedulers.SCHEDULERS)
        raise ValueError(f"Unknown scheduler. Valid: {valid}. Received: {config.scheduler!r}")
    preset = presets.get_preset(config.model)
    default_size = 256 if preset.weight_files else preset.default_size
    img_height = validate_image_size(
        "img_height", config.img_height or default_size, preset.size_multiple
    )
    img_width = validate_image_size(
        "img_width", config.img_width or default_size, preset.size_multiple
    )
    return preset, img_height, img_width
