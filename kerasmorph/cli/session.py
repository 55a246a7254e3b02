"""What a command handler gets besides its arguments: the `Session`.

A handler is `run(args, session) -> int`. The session builds the `Explorer` the
first time a handler asks for it and keeps it: a caller that runs `main` several
times in one process (a notebook, a test) passes the same `Session` to reuse the
model while its settings stay the same. Building and tracing a model costs
seconds (tiny) to minutes (sd1).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING

import kerasmorph
from kerasmorph.cli.arguments import AUTO_MODEL
from kerasmorph.errors import KerasmorphError
from kerasmorph.presets import PRESETS
from kerasmorph.weights import find_weights

if TYPE_CHECKING:
    from kerasmorph.explorer import Explorer


class CommandError(KerasmorphError):
    """A user error reported as one line on stderr, exit status 2.

    Raised by the handlers for flag combinations the library cannot see
    (`--adaptive` without `--max-frames`); `main` reports it like every other
    `KerasmorphError`.
    """


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """Everything that decides which `Explorer` a command builds."""

    model: str  # A preset, a converted checkpoint's directory, or "auto".
    height: int | None  # Image height; None: the preset's.
    width: int | None  # Image width; None: the preset's.
    jit: bool | None  # XLA; None: as the precision plan says.
    precision: str  # One of `kerasmorph.constants.PRECISION_OPTIONS`.
    weights_dir: str | None  # Searched first for weight files.
    strategy: str = "none"  # --strategy: none, mirrored, tpu or multiworker.
    embeddings: tuple[str, ...] = ()  # Textual-inversion files, loaded in order.
    compile_cache: bool = True  # --no-cache: False.

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ModelSettings:
        """The settings of the "model" group (and --strategy, where the command has it)."""
        return cls(
            model=args.model,
            height=args.height,
            width=args.width,
            jit=args.jit,
            precision=args.precision,
            weights_dir=args.weights_dir,
            strategy=getattr(args, "strategy", "none"),
            embeddings=tuple(getattr(args, "embedding", ())),
            compile_cache=args.compile_cache,
        )


@dataclasses.dataclass
class Session:
    """State the handlers of one `main` call (or of several, given the same Session) share.

    Example:

    ```python
    from kerasmorph.cli import Session, main

    session = Session()
    main(["generate", "a red circle", "--out", "a.png", "--model", "tiny"], session=session)
    main(["generate", "a blue square", "--out", "b.png", "--model", "tiny"], session=session)
    ```
    """

    # The last Explorer built and the settings it was built with (the model name
    # resolved); one entry bounds the memory.
    explorer: Explorer | None = None
    settings: ModelSettings | None = None

    def get_explorer(
        self, settings: ModelSettings, *, verbose: bool, long_prompts: bool
    ) -> Explorer:
        """The Explorer for `settings`: the last one when they are the same, else a new one."""
        settings = dataclasses.replace(
            settings, model=resolve_model_name(settings.model, settings.weights_dir)
        )
        if self.explorer is None or self.settings != settings:
            self.explorer = self.settings = None  # Release the previous model before building.
            self.explorer = _build_explorer(settings)
            self.settings = settings
        self.explorer.verbose = verbose
        # Not part of the settings: it changes how prompts are encoded, not the model.
        self.explorer.long_prompts = long_prompts
        # Nor is a depth map: each command sets its own (--depth), none is inherited.
        self.explorer.clear_depth_map()
        return self.explorer

    def explorer_for(self, args: argparse.Namespace) -> Explorer:
        """The Explorer that a command's "model" group (and --quiet, --long-prompts) describe."""
        return self.get_explorer(
            ModelSettings.from_args(args),
            verbose=not args.quiet,
            long_prompts=bool(getattr(args, "long_prompts", False)),
        )

    def own_explorer_for(self, args: argparse.Namespace) -> Explorer:
        """A new Explorer for `args`, not kept: for a command that changes its model
        (`train-embedding` adds a token), so later commands of the session never see it."""
        settings = ModelSettings.from_args(args)
        settings = dataclasses.replace(
            settings, model=resolve_model_name(settings.model, settings.weights_dir)
        )
        explorer = _build_explorer(settings)
        explorer.verbose = not args.quiet
        return explorer


def _build_explorer(settings: ModelSettings) -> Explorer:
    from kerasmorph.models.textual_inversion import load_textual_inversion

    # A bad --embedding file fails here, before minutes of model building.
    for path in settings.embeddings:
        load_textual_inversion(path)
    explorer = kerasmorph.Explorer(
        settings.model,
        img_height=settings.height,
        img_width=settings.width,
        jit_compile=settings.jit,
        precision=settings.precision,
        weights_dir=settings.weights_dir,
        strategy=make_strategy(settings.strategy),
        # True means "as the environment says"; --no-cache is an explicit False.
        compile_cache=None if settings.compile_cache else False,
    )
    for path in settings.embeddings:
        explorer.add_text_embeddings(path)
    return explorer


def resolve_model_name(name: str, weights_dir: str | None) -> str:
    """Maps 'auto' to 'sd1' when its files are on disk, else to 'shapes'."""
    if name != AUTO_MODEL:
        return name
    files = {
        component: file
        for component, file in PRESETS["sd1"].weight_files.items()
        if component != "image_encoder"
    }
    if all(find_weights(files, weights_dir).values()):
        return "sd1"
    print(
        "kerasmorph: no Stable Diffusion weights found (see `kerasmorph info`); "
        "using the offline 'shapes' toy model (coloured circles, squares and "
        "triangles on white; real Stable Diffusion weights give real pictures).",
        file=sys.stderr,
    )
    return "shapes"


def make_strategy(name: str):
    """Builds the tf.distribute strategy named on the command line (or None)."""
    if name == "none":
        return None
    import tensorflow as tf

    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    # mirrored, and each worker's local devices under multiworker (workers
    # render disjoint frames, so they need no collective).
    return tf.distribute.MirroredStrategy()
