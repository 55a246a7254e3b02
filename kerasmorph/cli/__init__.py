"""The `kerasmorph` command line: parse, call the library, report.

Each command module registers its subcommands with `register(subparsers,
shared)`, where `shared` holds the argument groups several commands share
(`kerasmorph.cli.arguments`), and sets each subcommand's handler,
`run(args, session) -> int`. `main(argv)` is the console-script entry point and
returns the exit status, so tests call `main([...])` directly. Bad arguments
give a one-line error and exit status 2.

| module | commands |
|---|---|
| `info` | info |
| `generate` | generate |
| `walks` | interpolate, grid, walk, loop, morph-seeds |
| `images` | img2img, sweep, inpaint, morph-images |
| `render` | render (and the rendering the walk commands share) |
| `bench` | bench |
| `checkpoints` | convert, merge, similarity |

Only the handlers import TensorFlow, KerasCV and the model modules, so
`kerasmorph --help` starts fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import kerasmorph
from kerasmorph.cli import bench, checkpoints, generate, images, info, render, walks
from kerasmorph.cli.arguments import SharedArguments
from kerasmorph.cli.session import CommandError, ModelSettings, Session

__all__ = ["CommandError", "ModelSettings", "Session", "build_parser", "main"]

# In the order `kerasmorph --help` lists their commands.
COMMANDS = (info, generate, walks, images, render, bench, checkpoints)


def build_parser() -> argparse.ArgumentParser:
    """Builds the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="kerasmorph",
        description="Explore Stable Diffusion latent spaces with Keras 3 and KerasCV.",
    )
    parser.add_argument("--version", action="version", version=kerasmorph.__version__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shared = SharedArguments.build()
    for command in COMMANDS:
        command.register(subparsers, shared)
    return parser


def main(argv: Sequence[str] | None = None, *, session: Session | None = None) -> int:
    """Runs the command line; returns the exit status.

    Args:
        argv: the arguments, without the program name; None: `sys.argv[1:]`.
        session: reuse the Explorer that earlier `main` calls given this
            session built (same model settings); None: a new session.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args, Session() if session is None else session)
    except (CommandError, ValueError, FileNotFoundError, ImportError) as error:
        message = str(error)
        if isinstance(error, FileNotFoundError) and "\n" in message:
            print(f"kerasmorph {args.command}: {message}", file=sys.stderr)
        else:
            print(f"kerasmorph {args.command}: error: {message}", file=sys.stderr)
        return 2
