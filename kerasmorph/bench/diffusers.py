"""The diffusers comparison: its SD UNet (random weights) timed on PyTorch CPU, in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from kerasmorph.bench.report import peak_rss_gib, summarize

DIFFUSERS_HINT = "pip install torch diffusers (or the `reference` extra)"
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


def diffusers_in_subprocess(model, img_height, img_width, batch_size, num_rounds) -> dict[str, Any]:
    """`run_diffusers` in a fresh interpreter (so its memory is returned); its JSON result."""
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
