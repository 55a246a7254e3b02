"""`kerasmorph evaluate`: how smooth morphs are, from their frames (`kerasmorph.metrics`).

Each FRAMES is a GIF, an MP4, a folder of PNG frames (in name order) or a
render directory (its finished frames, in frame order). For each it prints
one row per distance: path length, directness, ISTD, PDV, smoothness
(1 − Gini), the largest jump and the presence minimum; several FRAMES give a
comparison. `--json` prints (or `--json FILE.json` writes) every number,
`--plot FILE.png` draws the curves, and `--latent` adds the distance of the
frames' VAE latents (`Explorer.encode_image`, at the frames' size).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

import numpy as np

from kerasmorph.cli.arguments import AUTO_MODEL, non_negative_float, own_arguments
from kerasmorph.cli.checks import check_outputs
from kerasmorph.cli.output import IMAGE_SUFFIXES
from kerasmorph.cli.session import CommandError, ModelSettings, Session
from kerasmorph.metrics import DISTANCES, PRESENCE_THRESHOLD

_VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi")
_PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def register(subparsers, shared) -> None:
    """Adds `evaluate`."""
    own = own_arguments()
    own.add_argument(
        "frames",
        nargs="+",
        metavar="FRAMES",
        help="a GIF, an MP4, a folder of PNG frames or a render directory (several: one "
        "row each, compared)",
    )
    own.add_argument(
        "--metrics",
        nargs="+",
        choices=DISTANCES,
        default=["l2", "ssim"],
        help="frame distances: l2 (root-mean-square pixel difference), mad (mean absolute), "
        "ssim (1 − SSIM); all on pixels in [0, 1]",
    )
    own.add_argument(
        "--threshold",
        type=non_negative_float,
        default=float(PRESENCE_THRESHOLD),
        help="presence: a pixel is foreground when a channel differs from the border's "
        "median colour by more than this many grey levels (of 255)",
    )
    own.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE.json",
        help="print every number as JSON instead of the table, or write it to FILE.json",
    )
    own.add_argument("--plot", metavar="FILE.png", help="draw the distance and presence curves")
    latent = own.add_argument_group("latent distance")
    latent.add_argument(
        "--latent",
        action="store_true",
        help="add latent_l2: the frames encoded with --model's VAE at their own size",
    )
    latent.add_argument(
        "--model",
        default=AUTO_MODEL,
        help="the model whose VAE encodes the frames for --latent (a preset or a converted "
        "checkpoint's directory; auto: sd1 when its files are on disk, else shapes)",
    )
    latent.add_argument("--weights-dir", help="directory searched first for weight files")
    command = subparsers.add_parser(
        "evaluate",
        help="measure how smooth morphs are (ISTD, PDV, smoothness, presence)",
        description="Measures the neighbouring-frame distances of one or more morphs and "
        "their statistics (kerasmorph.metrics), and the presence of the subject per frame.",
        parents=[own],
    )
    command.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace, session: Session) -> int:
    from kerasmorph import export, metrics

    json_out = None if args.json in (None, "-") else Path(args.json)
    plot_out = None if args.plot is None else Path(args.plot)
    if json_out is not None and json_out.suffix.lower() != ".json":
        raise CommandError(
            f"--json FILE must end in .json (put a bare --json after FRAMES). "
            f"Received: --json {args.json}"
        )
    if plot_out is not None and plot_out.suffix.lower() not in _PLOT_SUFFIXES:
        raise CommandError(f"--plot must end in .png, .pdf or .svg. Received: --plot {args.plot}")
    inputs = {f"FRAMES #{index}": path for index, path in enumerate(args.frames, 1)}
    check_outputs({"--json": json_out, "--plot": plot_out}, inputs)
    model, weights_dir = args.model, args.weights_dir
    if not args.latent and (model != AUTO_MODEL or weights_dir is not None):
        raise CommandError("--model and --weights-dir choose the VAE of --latent: add --latent")
    evaluations = {}
    for path in args.frames:
        frames = read_frames(path)
        latents = _latents(session, frames, model, weights_dir) if args.latent else None
        evaluation = metrics.evaluate_frames(
            frames, latents=latents, metrics=args.metrics, threshold=args.threshold
        )
        evaluations[_unique(path, evaluations)] = evaluation
    if plot_out is not None:
        from kerasmorph import atomic, plotting

        figure = plotting.plot_morph_metrics(evaluations)
        with atomic.atomic_path(plot_out) as temporary:
            figure.savefig(temporary, format=plot_out.suffix[1:].lower())
        print(f"{plot_out}: distance and presence curves", file=sys.stderr)
    document = {"morphs": [{"path": name, **value} for name, value in evaluations.items()]}
    if json_out is not None:
        export.save_json(json_out, document)
        print(f"{json_out}: every number as JSON", file=sys.stderr)
    if args.json == "-":
        print(json.dumps(document, indent=2))
    else:
        print(format_table(metrics.compare(evaluations)))
    return 0


def _unique(path: str, taken) -> str:
    """`path`, or `path (2)`, … when the same FRAMES is given twice."""
    name, count = path, 1
    while name in taken:
        count += 1
        name = f"{path} ({count})"
    return name


def _latents(session: Session, frames: np.ndarray, model: str, weights_dir) -> np.ndarray:
    """The frames encoded by `model`'s VAE, an Explorer of the frames' size."""
    settings = ModelSettings(
        model=model,
        height=frames.shape[1],
        width=frames.shape[2],
        jit=False,  # One encoder pass per frame: compiling would cost more than it saves.
        precision="auto",
        weights_dir=weights_dir,
    )
    explorer = session.get_explorer(settings, verbose=False, long_prompts=False)
    return explorer.encode_image(frames)


def format_table(rows: list[dict]) -> str:
    """The rows of `kerasmorph.metrics.compare` as an aligned text table."""
    header = (
        "FRAMES",
        "frames",
        "metric",
        "path",
        "direct",
        "ISTD",
        "PDV",
        "smooth",
        "max jump (i)",
        "presence min (i)",
    )

    def number(value) -> str:
        return "-" if value is None else f"{value:.4g}"

    lines = [header]
    for row in rows:
        presence = (
            "-"
            if row["presence_minimum"] is None
            else f"{row['presence_minimum']:.3f} ({row['presence_argmin']})"
        )
        lines.append(
            (
                row["name"],
                str(row["num_frames"]),
                row["metric"],
                number(row["path_length"]),
                number(row["directness"]),
                number(row["istd"]),
                number(row["pdv"]),
                f"{row['smoothness']:.3f}",
                f"{row['largest_jump']:.4g} ({row['largest_jump_index']})",
                presence,
            )
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if column < 3 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(line, widths))
        ).rstrip()
        for line in lines
    )


# ------------------------------------------------------------------- reading frames


def read_frames(path: str) -> np.ndarray:
    """The frames of a GIF, a video, a folder of PNG frames or a render directory.

    Returns uint8 (F, H, W, 3), F >= 2. A GIF frame shown k times as long as
    the shortest counts k times: Pillow stores identical neighbouring frames
    once, adding up their durations (an empty mid-morph frame repeated, say).

    Raises:
        FileNotFoundError: when `path` does not exist.
        CommandError: for a single image, an unknown kind of file, an empty
            folder, frames of different sizes, or fewer than 2 frames.
        FileFormatError: for a video that cannot be decoded (an undecodable
            GIF or PNG raises Pillow's error, an OSError).
    """
    from kerasmorph import renders

    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    suffix = source.suffix.lower()
    if source.name == renders.MANIFEST or (source / renders.MANIFEST).is_file():
        _, indices = renders.finished_frames(source)
        directory = source if source.is_dir() else source.parent
        named = [(f"frame {i}", renders.frame_path(directory, i)) for i in indices]
        frames = [(name, frame) for (name, _), frame in zip(named, _read_pngs(named))]
    elif source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() == ".png" and p.is_file())
        if not files:
            raise CommandError(
                f"{path}: no PNG frames in this folder (FRAMES is a GIF, an MP4, a folder of "
                "PNG frames or a render directory)"
            )
        named = [(file.name, file) for file in files]
        frames = [(name, frame) for (name, _), frame in zip(named, _read_pngs(named))]
    elif suffix == ".gif":
        frames = _read_gif(source)
    elif suffix in _VIDEO_SUFFIXES:
        frames = _read_video(source)
    elif suffix in IMAGE_SUFFIXES:
        raise CommandError(
            f"{path} is a single image: a morph needs 2+ frames (give a GIF, an MP4, a folder "
            "of PNG frames or a render directory)"
        )
    else:
        raise CommandError(
            f"{path}: FRAMES must be a .gif, a video ({', '.join(_VIDEO_SUFFIXES)}), a folder "
            "of PNG frames or a render directory"
        )
    return _stack(path, frames)


def _read_pngs(named):
    from kerasmorph import renders

    return renders.iter_frame_files(file for _, file in named)


def _read_gif(source: Path) -> list[tuple[str, np.ndarray]]:
    from PIL import Image

    frames, durations = [], []
    with Image.open(source) as image:
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            durations.append(image.info.get("duration") or 0)
            frames.append((f"frame {index}", np.asarray(image.convert("RGB"))))
    shortest = min((d for d in durations if d > 0), default=0)
    if shortest == 0:
        return frames
    repeats = [max(1, round(d / shortest)) for d in durations]
    return [frame for frame, count in zip(frames, repeats) for _ in range(count)]


def _read_video(source: Path) -> list[tuple[str, np.ndarray]]:
    from kerasmorph import installs

    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the FFMPEG plugin needs it)
    except ImportError as error:
        raise installs.missing_dependency("Reading video", ["imageio", "imageio-ffmpeg"]) from error
    from kerasmorph.errors import FileFormatError

    try:
        with imageio.get_reader(source, format="FFMPEG") as reader:
            return [(f"frame {i}", np.asarray(frame)[..., :3]) for i, frame in enumerate(reader)]
    except (OSError, RuntimeError, ValueError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        message = lines[0] if lines else type(error).__name__
        raise FileFormatError(source, f"cannot be read as a video: {message}") from error


def _stack(path: str, frames: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """One (F, H, W, 3) array; refuses one frame, or frames of different sizes."""
    if len(frames) < 2:
        raise CommandError(
            f"{path} holds {len(frames)} frame{'' if len(frames) == 1 else 's'}: "
            "a morph needs at least 2"
        )
    first_name, first = frames[0]
    for name, frame in frames[1:]:
        if frame.shape != first.shape:
            raise CommandError(
                f"{path}: {name} is {frame.shape[1]}x{frame.shape[0]} but {first_name} is "
                f"{first.shape[1]}x{first.shape[0]}; all frames must have one size"
            )
    return np.stack([frame for _, frame in frames])
