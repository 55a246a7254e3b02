"""Checking --out before any model work, and writing frames where it points.

A file --out (an image, GIF or MP4) must not name an existing directory: the
error comes up front, not after the frames are rendered.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kerasmorph.cli.session import CommandError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def check_image_out(out: str) -> Path:
    """Checks that --out names one image file."""
    path = Path(out)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise CommandError(f"--out must end in .png, .jpg, .jpeg or .webp. Received: --out {out}")
    return _check_not_a_directory(path, out)


def check_output_path(out: str) -> Path:
    """Checks the --out of a command that writes frames: a GIF, MP4, grid image or directory."""
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix and suffix not in (".gif", ".mp4", *IMAGE_SUFFIXES):
        raise CommandError(
            "--out must end in .gif, .mp4, .png, .jpg, .jpeg or .webp, or name a "
            f"directory (no suffix). Received: --out {out}"
        )
    return _check_not_a_directory(path, out) if suffix else path


def _check_not_a_directory(path: Path, out: str) -> Path:
    """Refuses a file --out that names an existing directory (it would fail after the work)."""
    if path.is_dir():
        raise CommandError(
            f"--out names a file ({path.suffix} output) but {out} is a directory; "
            f"choose another name, or remove the directory. Received: --out {out}"
        )
    return path


def write_frames(path: Path, frames, args: argparse.Namespace, *, num_columns=None):
    """Writes frames to `path` in the format its suffix names; returns what was written."""
    from kerasmorph import export, plotting

    suffix = path.suffix.lower()
    if suffix == ".gif":
        return export.save_gif(path, frames, fps=args.fps, rubber_band=args.rubber_band)
    if suffix == ".mp4":
        return export.save_mp4(path, frames, fps=args.fps)
    if suffix in IMAGE_SUFFIXES:
        return plotting.save_grid(path, frames, num_columns=num_columns)
    export.save_frames(path, frames)
    return path
