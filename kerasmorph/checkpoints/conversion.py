"""Conversion: a checkpoint -> KerasCV `.h5` weight files and a manifest.

`convert(checkpoint, out_dir)` writes one legacy-`.h5` file per component
under the KerasCV file names that `kerasmorph.weights` looks for, plus a small
`kerasmorph.json` naming the preset, so both `Explorer("sd1", weights_dir=DIR)`
and `Explorer(DIR)` load the result (the manifest is read back by
`kerasmorph.weights.read_manifest`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from kerasmorph.atomic import atomic_path
from kerasmorph.checkpoints.detect import detect_family
from kerasmorph.checkpoints.load import load_component
from kerasmorph.checkpoints.plans import check_component
from kerasmorph.checkpoints.sources import open_checkpoint
from kerasmorph.checkpoints.writers import save_legacy_h5
from kerasmorph.constants import COMPONENTS
from kerasmorph.models import build_component, depth
from kerasmorph.presets import get_preset
from kerasmorph.schedulers.base import check_prediction_type
from kerasmorph.weights import FAMILIES, MANIFEST_NAME, Family, read_manifest


@dataclasses.dataclass(frozen=True)
class ConversionResult:
    """What `convert` wrote.

    Attributes:
        preset: `"sd1"`, `"sd2"` or `"sd2-depth"`, the preset that loads the files.
        directory: the output directory.
        files: component -> path of the written `.h5` file.
    """

    preset: Family
    directory: Path
    files: dict[str, Path]


def _write_manifest(
    out: Path,
    family: Family,
    checkpoint: str | os.PathLike,
    files: Mapping[str, Path],
    prediction_type: str,
) -> None:
    """Writes `out/kerasmorph.json`, keeping the files an earlier conversion listed."""
    manifest_path = out / MANIFEST_NAME
    previous = read_manifest(out) if manifest_path.is_file() else {}
    manifest = {
        "format": 1,
        "preset": family,
        "source": str(Path(checkpoint).expanduser().resolve()),
        "files": {**previous.get("files", {}), **{c: p.name for c, p in files.items()}},
        "prediction_type": prediction_type,
    }
    with atomic_path(manifest_path) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2) + "\n")


def convert(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    family: Family | None = None,
    components: Sequence[str] = COMPONENTS,
    overwrite: bool = False,
    prediction_type: str | None = None,
    verbose: bool = False,
) -> ConversionResult:
    """Converts a checkpoint into KerasCV weight files in `out_dir`.

    Each component is built (random), filled from the checkpoint, saved in
    KerasCV's legacy `.h5` layout under the file name its preset looks for
    (e.g. `kcv_diffusion_model.h5` for sd1, `diffusion_model_v2_1.h5` for sd2,
    `diffusion_model_v2_depth.h5` for sd2-depth, whose UNet's first conv takes
    5 channels: the latent and a depth map),
    and freed before the next is built, so peak memory is about one component
    (the UNet: ~3.4 GB) plus the memory-mapped checkpoint. A `kerasmorph.json`
    records the preset, so `Explorer(out_dir)` works as well as
    `Explorer(preset, weights_dir=out_dir)`.

    Args:
        checkpoint: a CompVis/A1111 `.safetensors`/`.ckpt` file or a
            diffusers folder.
        out_dir: the directory to write (created if needed).
        family: force `"sd1"`, `"sd2"` or `"sd2-depth"`; default: detected
            from the tensors (`detect_family`: a 5-channel SD 2.x UNet is
            `"sd2-depth"`).
        components: which components to convert (default: all four). A
            component whose tensors are absent from a diffusers folder (e.g.
            no `vae/`) raises.
        overwrite: replace existing files.
        prediction_type: what the UNet predicts, recorded in the manifest so
            the Explorer samples it right: `"epsilon"` or `"v_prediction"`
            (SD 2.x 768-v models). Default: a diffusers folder's
            `scheduler/scheduler_config.json`, else `"epsilon"` (a single
            file does not say; pass it for a 768-v file).
        verbose: show a progress bar per component of the tensors loaded
            (the CLI's default; `--quiet` turns it off).

    Returns:
        A `ConversionResult`.

    Raises:
        CheckpointError: for a missing or misfitting tensor (named), an
            unknown family or an unreadable file.
        FileExistsError: when an output file exists and `overwrite` is False.
        ImportError: for a `.ckpt` when torch is not installed.

    Example:

    ```python
    kerasmorph.checkpoints.convert("v1-5-pruned-emaonly.safetensors", "sd15")
    explorer = kerasmorph.Explorer("sd15")  # or Explorer("sd1", weights_dir="sd15")
    ```
    """
    if family is not None and family not in FAMILIES:
        valid = ", ".join(repr(name) for name in FAMILIES)
        raise ValueError(f"`family` must be one of {valid}. Received: family={family!r}")
    if prediction_type is None:
        prediction_type = _recorded_prediction_type(checkpoint)
    prediction_type = check_prediction_type(prediction_type)
    for component in components:
        check_component(component)
    out = Path(out_dir).expanduser()
    with open_checkpoint(checkpoint) as source:
        family = family or detect_family(source)
        preset = get_preset(family)
        files = {c: out / preset.weight_files[c].filename for c in components}
        existing = [str(path) for path in files.values() if path.exists()]
        if existing and not overwrite:
            raise FileExistsError(
                f"Not overwriting {', '.join(existing)}; pass overwrite=True "
                f"(--overwrite). Received: out_dir={str(out_dir)!r}"
            )
        out.mkdir(parents=True, exist_ok=True)
        for component in components:
            # A depth UNet comes wrapped (`depth.with_depth_input`); its file is the
            # 5-channel UNet's own, which `build_component` loads before wrapping.
            model = depth.inner_unet(build_component(preset, component, 128, 128))
            load_component(model, component, source, family, verbose=verbose)
            save_legacy_h5(model, files[component])
            del model
    _write_manifest(out, family, checkpoint, files, prediction_type)
    return ConversionResult(family, out, files)


def _recorded_prediction_type(checkpoint: str | os.PathLike) -> str:
    """A diffusers folder's `scheduler/scheduler_config.json` prediction type, else epsilon."""
    config = Path(checkpoint).expanduser() / "scheduler" / "scheduler_config.json"
    if not config.is_file():
        return "epsilon"
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("prediction_type", "epsilon")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"Could not read {config}: {error}") from None
