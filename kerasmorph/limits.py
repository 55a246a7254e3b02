"""Up-front resource limits: refuse, before any work, what cannot fit this machine.

Each estimate is a lower bound of one allocation a request certainly makes
(pure integer arithmetic, no model built), so a request refused here would
have run out of memory (or disk) later; one that passes may still not fit.
`check_memory` adds the parts of a request that are alive at the same time
and compares the sum with `machine_memory()`; the error names the largest
part and the flag that decides it.

| part | bytes | function |
|---|---|---|
| one image's working memory | `max(T² · a, H · W · d)`, `T = (H // f) · (W // f)` | `image_bytes` |
| a batch of them | `B · image_bytes(H, W)` | `batch_bytes` |
| frames held until written | `F · H · W · p` (`HELD_BYTES_PER_PIXEL`) | `held_frames_bytes` |
| a walk's per-frame plan | `F · w` (`WALK_FRAME_BYTES`) | `walk_plan_bytes` |
| prompt encodings materialised | `N · 77 · D · 4` | `encodings_bytes` |
| starting noise of N images | `N · (H // 8) · (W // 8) · 4 · 4` | `noise_bytes` |
| a sweep's values | `N · 32` (a list of Python floats) | `SWEEP_VALUE_BYTES` |
| a frame directory (disk) | `F · (63 + ⌈H · (3W + 1) / 1032⌉)`, `F` inodes | `check_disk` |

`T² · a` is the largest attention score matrix of one image (the model's
`ModelCost`: `T` positions, `a` bytes per pair of positions); `H · W · d`
the decoder's last full-resolution layer (its input and output, float32).
A PNG file is at least its 57 bytes of chunks and 6 of zlib framing, plus the
raw rows (a filter byte and `3W` bytes each) deflated at best 1032:1.

Memory is the physical memory (capped by a cgroup limit) plus swap; a
device's own memory is not counted (it is rarely larger than its host's).
Standard library only (psutil used when installed), so importing it is cheap.

Example:

```python
need = kerasmorph.limits.image_bytes(64000, 64000, kerasmorph.limits.MODEL_COSTS["tiny"])
kerasmorph.limits.check_memory(
    "--height 64000 --width 64000", [(need, "the attention of one image", "a smaller size")]
)  # ResourceLimitError: ... needs at least 14.6 PiB of memory ...
```
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from kerasmorph.errors import ResourceLimitError

Output = Literal["stream", "gif", "gif-rubber-band", "grid", "array"]

# Bytes per frame pixel that an output holds in memory until it is written:
HELD_BYTES_PER_PIXEL: dict[str, int] = {
    # MP4 and frame directories: each frame is written as it comes.
    "stream": 0,
    # Pillow keeps every GIF frame, as an 8-bit palette image, until the end.
    "gif": 1,
    # The frames as RGB (to play them backwards), then ~2F palette frames.
    "gif-rubber-band": 3 + 2,
    # The frames listed as RGB, then the grid image tiled from them.
    "grid": 3 + 3,
    # Frames listed, then stacked into one uint8 array (generate, sweep).
    "array": 3 + 3,
}

# Peak bytes per frame of a walk's plan, before any frame is rendered
# (tracemalloc, CPython 3.11, rounded down): keyframe paths (`interpolate`,
# `morph-seeds`, `morph-images`) keep a list of one `PathFrame` object per
# frame (320 measured); the others a few float64 arrays of frame positions (57).
WALK_FRAME_BYTES: dict[str, int] = {"path": 288, "positions": 48}

# A Python float in a list: the 24-byte object and its 8-byte slot.
SWEEP_VALUE_BYTES = 32

# Tokens of one prompt encoding (longer prompts have more: this is the least).
PROMPT_TOKENS = 77


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """Lower bounds of what one image costs a model, read off its architecture.

    Attributes:
        attention_factor: pixels per position side of the model's largest
            attention: 8 when it attends over the latent grid, 16 over half of it.
        attention_bytes: bytes per pair of positions of that attention's
            scores: heads × rows per image (2 for the UNet, whose batch holds
            the unconditional pass too) × bytes per value (2 for a 16-bit
            UNet, the least; 4 for the float32 VAE).
        decoder_pixel_bytes: bytes per image pixel of the decoder's last
            full-resolution layer, its float32 input and output together.
        text_width: width `D` of a prompt encoding (77, D).
        default_size: image height and width when none is given.
    """

    attention_factor: int
    attention_bytes: int
    decoder_pixel_bytes: int
    text_width: int
    default_size: int


# By `kerasmorph.presets.Preset.architecture`. sd1: KerasCV's UNet attends at
# the latent grid with 8 heads (SpatialTransformer(8, 40)); its Decoder ends in
# ResnetBlock(128) at full resolution. sd2: 5 heads (SpatialTransformer(5, 64)),
# the same Decoder. tiny: the decoder's AttentionBlock(64) over the latent grid
# (1 head, float32) and ResnetBlock(32) at full resolution. shapes: the UNet
# attends at half the latent grid with 2 heads; its decoder upsamples the 4
# latent channels and makes 3 colour channels (float32).
MODEL_COSTS: dict[str, ModelCost] = {
    "sd1": ModelCost(8, 8 * 2 * 2, 2 * 128 * 4, 768, 512),
    "sd2": ModelCost(8, 5 * 2 * 2, 2 * 128 * 4, 1024, 512),
    "sd2-depth": ModelCost(8, 5 * 2 * 2, 2 * 128 * 4, 1024, 512),  # sd2's layers.
    "tiny": ModelCost(8, 1 * 1 * 4, 2 * 32 * 4, 64, 128),
    "shapes": ModelCost(16, 2 * 2 * 2, (4 + 3) * 4, 128, 128),
    "shapes-depth": ModelCost(16, 2 * 2 * 2, (4 + 3) * 4, 128, 128),  # shapes' layers.
    "shapes-black": ModelCost(16, 2 * 2 * 2, (4 + 3) * 4, 128, 128),
    "shapes-outlined": ModelCost(16, 2 * 2 * 2, (4 + 3) * 4, 128, 128),
}

# The least of every field: a lower bound for a model not named (`--model auto`).
LOWEST_COST = ModelCost(
    attention_factor=max(cost.attention_factor for cost in MODEL_COSTS.values()),
    attention_bytes=min(cost.attention_bytes for cost in MODEL_COSTS.values()),
    decoder_pixel_bytes=min(cost.decoder_pixel_bytes for cost in MODEL_COSTS.values()),
    text_width=min(cost.text_width for cost in MODEL_COSTS.values()),
    default_size=min(cost.default_size for cost in MODEL_COSTS.values()),
)

# (bytes, what it is, how to need less): one part of a request's memory.
Part = tuple[int, str, str]


def format_bytes(num_bytes: float) -> str:
    """`1536` -> `"1.5 KiB"`: binary units, 3 significant digits."""
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            break
        value /= 1024
    if unit == "PiB" and value >= 1000:
        return f"{value:.3g} PiB"
    return f"{int(value)} B" if unit == "B" else f"{value:.3g} {unit}"


def image_bytes(height: int, width: int, cost: ModelCost = LOWEST_COST) -> int:
    """Working memory of one image at `height` × `width`, a lower bound.

    `max(T² · a, H · W · d)` with `T = (H // f) · (W // f)`: the scores of
    the model's largest attention over `T` positions (`a` bytes per pair,
    `f` = `cost.attention_factor`) or its decoder's last full-resolution
    layer (`d` = `cost.decoder_pixel_bytes` per pixel), whichever is larger;
    they are not alive at once.

    Example: sd1 at 512×512: `T = 4096`, `4096² · 32` = 512 MiB.
    """
    positions = max(1, height // cost.attention_factor) * max(1, width // cost.attention_factor)
    return max(
        positions * positions * cost.attention_bytes, height * width * cost.decoder_pixel_bytes
    )


def batch_bytes(batch_size: int, height: int, width: int, cost: ModelCost = LOWEST_COST) -> int:
    """`batch_size · image_bytes(height, width, cost)`: one model call's working memory."""
    return batch_size * image_bytes(height, width, cost)


def held_frames_bytes(num_frames: int, height: int, width: int, output: Output) -> int:
    """`F · H · W · p`: the frames an output keeps in memory until it is written.

    `p` is `HELD_BYTES_PER_PIXEL[output]`: 0 for `"stream"` (MP4, a frame
    directory), 1 for `"gif"`, 5 for `"gif-rubber-band"`, 6 for `"grid"` (a
    grid image) and `"array"` (frames returned as one array).
    """
    if output not in HELD_BYTES_PER_PIXEL:
        valid = ", ".join(repr(name) for name in HELD_BYTES_PER_PIXEL)
        raise ValueError(f"`output` must be one of {valid}. Received: output={output!r}")
    return num_frames * height * width * HELD_BYTES_PER_PIXEL[output]


def walk_plan_bytes(num_frames: int, kind: Literal["path", "positions"]) -> int:
    """`F · w`: a walk's per-frame plan (`WALK_FRAME_BYTES[kind]` bytes per frame)."""
    return num_frames * WALK_FRAME_BYTES[kind]


def encodings_bytes(num_rows: int, text_width: int, num_tokens: int = PROMPT_TOKENS) -> int:
    """`N · 77 · D · 4`: `num_rows` float32 prompt encodings held at once (a grid's cells)."""
    return num_rows * num_tokens * text_width * 4


def noise_bytes(num_images: int, height: int, width: int) -> int:
    """`N · (H // 8) · (W // 8) · 4 · 4`: float32 starting noise for `num_images` latents."""
    return num_images * (height // 8) * (width // 8) * 4 * 4


def png_bytes(height: int, width: int) -> int:
    """The fewest bytes a `height` × `width` RGB PNG file can have.

    `63 + ⌈H · (3W + 1) / 1032⌉`: the PNG signature and the IHDR, IDAT and
    IEND chunks (57 bytes) and the zlib header and checksum (6), plus the raw
    rows (a filter byte and 3 bytes per pixel each) at deflate's best ratio,
    1032:1.
    """
    return 63 + math.ceil(height * (3 * width + 1) / 1032)


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo(field: str) -> int | None:
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        parts = value.split()
        if name == field and parts and parts[0].isdigit():
            return int(parts[0]) * 1024  # Listed in kB.
    return None


def machine_memory() -> int | None:
    """The memory this process can use: physical memory, capped by a cgroup limit, plus swap.

    Physical memory from psutil when installed, else `os.sysconf`, else
    `/proc/meminfo`; the cgroup v2 (`memory.max`) or v1
    (`memory.limit_in_bytes`) limit when lower; swap from psutil or
    `/proc/meminfo`.

    Returns:
        Bytes, or None when nothing says (then nothing is refused).
    """
    physical = swap = None
    try:
        import psutil

        physical, swap = psutil.virtual_memory().total, psutil.swap_memory().total
    except (ImportError, OSError, RuntimeError):
        pass
    if physical is None:
        try:
            physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            physical = _meminfo("MemTotal")
    if physical is None or physical <= 0:
        return None
    for limit_file in (
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ):
        limit = _read_int(limit_file)
        if limit is not None and 0 < limit < physical:
            physical = limit
    if swap is None:
        swap = _meminfo("SwapTotal") or 0
    return physical + swap


def check_memory(request: str, parts: Iterable[Part], *, memory: int | None = None) -> int:
    """Refuses a request whose parts, alive at once, exceed this machine's memory.

    Args:
        request: what was asked, for the message (e.g. `"--frames 1000000000
            into walk.gif at 128x128"`).
        parts: `(bytes, what, how to need less)` triples; their sum is the need.
        memory: the memory to compare with; default `machine_memory()`.

    Returns:
        The bytes needed (the sum of the parts).

    Raises:
        ResourceLimitError: (a `ValueError`) of one line: the need, its
            largest part, the machine's memory and what to change.
    """
    parts = [part for part in parts if part[0] > 0]
    need = sum(part[0] for part in parts)
    memory = machine_memory() if memory is None else memory
    if memory is None or need <= memory:
        return need
    largest, what, remedy = max(parts, key=lambda part: part[0])
    detail = what if largest * 100 >= need * 99 else f"{format_bytes(largest)} of it for {what}"
    raise ResourceLimitError(
        f"{request} needs at least {format_bytes(need)} of memory ({detail}); this machine "
        f"has {format_bytes(memory)}. {_sentence(remedy)}."
    )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(
    request: str,
    directory: str | os.PathLike,
    num_files: int,
    bytes_per_file: int,
    remedy: str,
) -> None:
    """Refuses writing `num_files` files of at least `bytes_per_file` into `directory`
    when its filesystem has fewer free bytes or free inodes.

    Args:
        request: what was asked, for the message.
        directory: where the files go (it need not exist yet).
        num_files: how many files.
        bytes_per_file: a lower bound of each file's size (`png_bytes`).
        remedy: what to change, for the message.

    Raises:
        ResourceLimitError: (a `ValueError`) of one line.
    """
    existing = _existing_ancestor(Path(directory))
    try:
        free = shutil.disk_usage(existing).free
        stat = os.statvfs(existing)
    except (OSError, AttributeError):
        return
    need = num_files * bytes_per_file
    remedy = _sentence(remedy)
    if need > free:
        raise ResourceLimitError(
            f"{request} needs at least {format_bytes(need)} of disk ({num_files:,} PNG files "
            f"of at least {bytes_per_file} bytes); {existing} has {format_bytes(free)} free. "
            f"{remedy}."
        )
    if stat.f_files > 0 and num_files > stat.f_favail:
        raise ResourceLimitError(
            f"{request} needs {num_files:,} files; the filesystem of {existing} has room for "
            f"{stat.f_favail:,} more (free inodes). {remedy}."
        )


def range_count(start: float, stop: float, step: float) -> int:
    """How many values "start:stop:step" has (stop included when on the grid), uncounted.

    The count `kerasmorph.sweeps.parse_range` makes, `⌊(stop − start) / step
    + 1e-9⌋ + 1`, without listing the values; 0 when the range is empty or
    not finite (`parse_range` reports those).
    """
    if not all(math.isfinite(value) for value in (start, stop, step)) or step <= 0:
        return 0
    if stop < start:
        return 0
    count = (stop - start) / step + 1e-9
    return int(math.floor(count)) + 1 if math.isfinite(count) else 0


def batch_part(batch_size: int, height: int, width: int, cost: ModelCost = LOWEST_COST) -> Part:
    """The `Part` of one model call's working memory (`batch_bytes`), with what to change."""
    size = f"{height}x{width}"
    if batch_size == 1:
        return (
            image_bytes(height, width, cost),
            f"the working memory of one {size} image",
            "use a smaller --height/--width",
        )
    return (
        batch_bytes(batch_size, height, width, cost),
        f"the working memory of a batch of {batch_size:,} {size} images",
        "use a smaller --batch-size (or --height/--width)",
    )


def frame_parts(
    num_frames: int,
    height: int,
    width: int,
    output: Output,
    *,
    walk: Literal["path", "positions"] | None = None,
    fewer: str = "fewer --frames",
    noun: str = "frames",
) -> list[Part]:
    """The `Part`s of `num_frames` frames: those the output holds, and the walk's plan.

    Args:
        num_frames: frames rendered.
        height, width: their size.
        output: what they go into (`HELD_BYTES_PER_PIXEL`).
        walk: the walk's kind (`WALK_FRAME_BYTES`), or None for no plan.
        fewer: what to ask for instead, for the message ("fewer --frames").
        noun: what the frames are called in the message ("frames", "images").
    """
    parts: list[Part] = []
    held = held_frames_bytes(num_frames, height, width, output)
    if held:
        reason = {
            "gif": "Pillow keeps every GIF frame until the file is written",
            "gif-rubber-band": "a rubber-band GIF keeps every frame, twice",
            "grid": "a grid image keeps every frame",
            "array": "all are kept until written",
        }[output]
        remedy = (
            f"use {fewer}"
            if output == "array"
            else f"write an .mp4 or a directory (streamed), or use {fewer}"
        )
        parts.append((held, f"{num_frames:,} {height}x{width} {noun}: {reason}", remedy))
    if walk is not None:
        parts.append(
            (
                walk_plan_bytes(num_frames, walk),
                f"the plan of a {num_frames:,}-frame walk",
                f"use {fewer}",
            )
        )
    return parts
