"""`kerasmorph export`: a render directory's frames into a GIF or MP4.

A walk rendered into a directory (`--out DIR`, resumable) is turned into an
animation afterwards, as often as wanted and with other `--fps` or
`--rubber-band` than the render: the frames are read one at a time from
their PNG files, in order, and written atomically like a render's own GIF or
MP4. An unfinished render is refused, naming its missing frames, unless
`--partial` exports the frames done so far.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kerasmorph.cli.arguments import SharedArguments, own_arguments, positive_float
from kerasmorph.cli.checks import check_outputs
from kerasmorph.cli.output import check_output_path
from kerasmorph.cli.session import CommandError, Session

_SUFFIXES = (".gif", ".mp4")


def register(subparsers, shared: SharedArguments) -> None:
    """Adds `export`."""
    own = own_arguments()
    own.add_argument(
        "render_dir", metavar="RENDER_DIR", help="a render directory (or its manifest)"
    )
    own.add_argument("--out", required=True, help="the animation: a .gif or .mp4 file")
    # As the walk commands' "output" group names and defaults them.
    own.add_argument("--fps", type=positive_float, default=10.0, help="GIF/MP4 frame rate")
    own.add_argument(
        "--rubber-band",
        action="store_true",
        help="play forwards then backwards (frames + frames[2:-1] reversed)",
    )
    own.add_argument(
        "--partial",
        action="store_true",
        help="export the frames done so far of an unfinished render (default: refuse it, "
        "naming the missing frames)",
    )
    export = subparsers.add_parser(
        "export",
        help="turn a render directory's frames into a GIF or MP4",
        description="Writes the frames of a render directory (made by a walk command "
        "with --out DIR) into a GIF or MP4, in frame order.",
        parents=[own],
    )
    export.set_defaults(run=run_export)


def run_export(args: argparse.Namespace, session: Session) -> int:
    from kerasmorph import export, limits, renders

    out = Path(args.out)
    if out.suffix.lower() not in _SUFFIXES:
        raise CommandError(f"--out must end in .gif or .mp4. Received: --out {args.out}")
    check_output_path(args.out)  # Not an existing directory.
    spec, indices = renders.finished_frames(args.render_dir, partial=args.partial)
    directory = Path(args.render_dir)
    directory = directory if directory.is_dir() else directory.parent
    paths = [renders.frame_path(directory, index) for index in indices]
    inputs = {"RENDER_DIR manifest": directory / renders.MANIFEST}
    inputs.update({f"frame {index}": path for index, path in zip(indices, paths)})
    check_outputs({"--out": out}, inputs)
    order = export.rubber_band_order(len(paths)) if args.rubber_band else range(len(paths))
    if out.suffix.lower() == ".gif":
        # Pillow keeps every GIF frame (8-bit) until the file is written.
        parts = limits.frame_parts(
            len(order), spec.img_height, spec.img_width, "gif", fewer="fewer frames"
        )
        limits.check_memory(f"{len(order):,} frames of {directory} into {out}", parts)
    frames = renders.iter_frame_files(paths[index] for index in order)
    if out.suffix.lower() == ".gif":
        export.save_gif(out, frames, fps=args.fps)
    else:
        export.save_mp4(out, frames, fps=args.fps)
    total = renders.frame_count(spec)
    done = "" if len(indices) == total else f" ({len(indices)} of its {total} frames done)"
    print(f"{directory}: {len(order)} frames written{done}", file=sys.stderr)
    print(out)
    return 0
