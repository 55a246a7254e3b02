"""The `kerasmorph` command line: parse, call the library, report.

Each command module registers its subcommands with `register(subparsers,
shared)`, where `shared` holds the argument groups several commands share
(`kerasmorph.cli.arguments`), and sets each subcommand's handler,
`run(args, session) -> int`. `main(argv)` is the console-script entry point and
returns the exit status, so tests call `main([...])` directly. `main` is the
one error boundary: bad arguments, kerasmorph's own errors and OS or decode
errors give a one-line error and exit status 2; Ctrl-C one line and 130; a
bug its traceback.

| module | commands |
|---|---|
| `info` | info |
| `generate` | generate |
| `walks` | interpolate, grid, walk, loop, morph-seeds |
| `images` | img2img, sweep, inpaint, morph-images |
| `depth` | depth2img (depth models: `Explorer.depth_to_image`) |
| `render` | render (and the rendering the walk commands share) |
| `bench` | bench |
| `checkpoints` | convert, merge, similarity |
| `export` | export (a render directory into a GIF or MP4) |
| `evaluate` | evaluate (how smooth morphs are: `kerasmorph.metrics`) |
| `training` | train-embedding (textual inversion: `kerasmorph.training`) |

Only the handlers import TensorFlow, KerasCV and the model modules, so
`kerasmorph --help` starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import kerasmorph
from kerasmorph import licences, weights
from kerasmorph.cli import (
    bench,
    checkpoints,
    depth,
    evaluate,
    export,
    generate,
    images,
    info,
    render,
    training,
    walks,
)
from kerasmorph.cli.arguments import HelpFormatter, SharedArguments
from kerasmorph.cli.session import CommandError, ModelSettings, Session
from kerasmorph.errors import KerasmorphError

__all__ = ["CommandError", "ModelSettings", "Session", "build_parser", "main"]

# Per output, the licence notices shown for it (`kerasmorph.licences.for_output`).
LICENCE_RECORD_NAME = "licence-notices.json"
# In the order `kerasmorph --help` lists their commands.
COMMANDS = (
    info,
    generate,
    walks,
    images,
    depth,
    render,
    export,
    evaluate,
    training,
    bench,
    checkpoints,
)


class _OneLineParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose refusals are one line (argparse prints its usage first)
    and whose `--help` shows every option's default (subparsers inherit both)."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Builds the argument parser with every subcommand (subparsers inherit its class)."""
    parser = _OneLineParser(
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

    The one error boundary of the command line: bad arguments (argparse),
    kerasmorph's own errors (`kerasmorph.KerasmorphError`), `ValueError`, OS
    errors (a missing, unwritable or full file), decode errors (an image, JSON
    or safetensors file that cannot be read), `OverflowError` and
    `ImportError` print one line, "kerasmorph COMMAND: error: ..." naming the
    file or argument, and return 2. Ctrl-C prints one line (with the frames a
    render directory keeps) and returns 130. Anything else is a bug and keeps
    its traceback.

    Args:
        argv: the arguments, without the program name; None: `sys.argv[1:]`.
        session: reuse the Explorer that earlier `main` calls given this
            session built (same model settings); None: a new session.

    Returns:
        0 on success, 2 for an error, 130 when interrupted.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    # Read through vars(): a flag counts as read only where its command reads it.
    options = vars(args)
    licences.for_output(
        options.get("out") or options.get("manifest"),
        quiet=bool(options.get("quiet")),
        record=weights.cache_dir() / LICENCE_RECORD_NAME,
    )
    try:
        return args.run(args, Session() if session is None else session)
    except KeyboardInterrupt:
        print(f"kerasmorph {args.command}: {interrupted_message(args)}", file=sys.stderr)
        return 130
    except reported_errors() as error:
        message = error_message(error)
        if isinstance(error, FileNotFoundError) and "\n" in message:
            # MissingWeightsError: the missing files and where they were looked for.
            print(f"kerasmorph {args.command}: {message}", file=sys.stderr)
        else:
            print(f"kerasmorph {args.command}: error: {message}", file=sys.stderr)
        return 2


def reported_errors() -> tuple[type[BaseException], ...]:
    """The exception types `main` reports in one line (the rest are bugs).

    The decode errors of Pillow and safetensors are looked up among the
    modules already imported (an error cannot come from one that is not), so
    the command line imports neither to start.
    """
    return (
        KerasmorphError,
        ValueError,  # json.JSONDecodeError included.
        OSError,  # Permission, is-a-directory, exists, no space, read-only; PIL's unidentified.
        OverflowError,
        ImportError,
        *_decode_errors(),
    )


# (module, exception name) of the decode errors that are neither ValueError nor OSError.
_DECODE_ERRORS = (
    ("PIL.Image", "DecompressionBombError"),
    ("safetensors", "SafetensorError"),
)

# Names of the locals that hold the file being read, in the frames of a decode error.
_FILE_LOCALS = ("filename", "path", "file", "fp")


def _decode_errors() -> tuple[type[BaseException], ...]:
    """The `_DECODE_ERRORS` of the modules imported so far."""
    found = []
    for module_name, name in _DECODE_ERRORS:
        error_type = getattr(sys.modules.get(module_name), name, None)
        if isinstance(error_type, type) and issubclass(error_type, BaseException):
            found.append(error_type)
    return tuple(found)


def error_message(error: BaseException) -> str:
    """The one-line text of a reported error, naming the file when the error has one."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        files = (os.fsdecode(name) for name in (error.filename, error.filename2) if name)
        message = f"{' -> '.join(files)}: {error.strerror}"
    else:
        message = str(error) or type(error).__name__
        if isinstance(error, (json.JSONDecodeError, *_decode_errors())):
            file = _file_being_read(error)
            if file is not None and file not in message:
                message = f"{file}: {message}"
        if isinstance(error, OverflowError):
            message += " (a number out of range: check the numeric arguments)"
    if isinstance(error, FileNotFoundError):
        return message
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def _file_being_read(error: BaseException) -> str | None:
    """The file a decode error came from: a path local of its innermost frame that has one."""
    frames = []
    traceback = error.__traceback__
    while traceback is not None:
        frames.append(traceback.tb_frame)
        traceback = traceback.tb_next
    for frame in reversed(frames):
        for name in _FILE_LOCALS:
            value = frame.f_locals.get(name)
            if isinstance(value, (str, os.PathLike)) and value and os.path.isfile(value):
                return os.fspath(value)
    return None


def interrupted_message(args: argparse.Namespace) -> str:
    """What `main` says on Ctrl-C: the frames a render directory keeps, what a command's own
    `interrupted` default says it keeps (e.g. a training checkpoint), or just "interrupted"."""
    own = getattr(args, "interrupted", None)
    if own is not None:
        return own(args)
    directory = _render_directory(args)
    if directory is None:
        return "interrupted"
    from kerasmorph import renders

    frames = [
        path
        for path in directory.glob(f"{renders.FRAME_PREFIX}*.png")
        if path.is_file() and path.stat().st_size > 0
    ]
    count = len(frames)
    return (
        f"interrupted; {count} frame{'' if count == 1 else 's'} kept in {directory}, "
        "rerun to resume"
    )


def _render_directory(args: argparse.Namespace) -> Path | None:
    """The render directory a command writes (--out, or `render`'s manifest), if it exists."""
    from kerasmorph.renders import MANIFEST

    for value in (getattr(args, "out", None), getattr(args, "manifest", None)):
        if not isinstance(value, str):
            continue
        path = Path(value)
        directory = path.parent if path.name == MANIFEST else path
        if directory.is_dir() and (directory / MANIFEST).is_file():
            return directory
    return None
