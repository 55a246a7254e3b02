"""Argument types and the argument groups several commands share.

Each shared group is an `add_help=False` parser, built once per `build_parser`
call (`SharedArguments.build`) and handed to every command module's `register`,
which passes the groups it needs as `parents`. A command's own arguments go in a
parent of their own, listed first (`own_arguments()`), so the usage line and
argparse's "the following arguments are required" errors name them first.

Parents share their `Action` objects with every command that lists them: never
call `set_defaults` on a command for a shared argument (it would change every
command's default); ask for a variant instead (`rendering(frames=..., guidance=...)`).
A command that cannot use a shared option asks for a variant without it
(`generating(batch_size=False)`), so argparse refuses the flag instead of the
command ignoring it. `HelpFormatter` shows every option's default in `--help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

from kerasmorph._checks import FLOAT32_MAX
from kerasmorph.constants import PRECISION_OPTIONS
from kerasmorph.metrics import METRICS
from kerasmorph.presets import PRESETS
from kerasmorph.schedulers import SCHEDULERS
from kerasmorph.schedules import SCHEDULES, get_schedule

AUTO_MODEL = "auto"
DEFAULT_GUIDANCE = 7.5


class HelpFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to the help of every option with a default its help does not name."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "default" in text
            or default is None
            or default is False
            or default == []
            or default is argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)"


def int_at_least(minimum: int):
    """An argparse `type` accepting integers >= `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def _number(text: str) -> float:
    """`float(text)`, refusing NaN, Inf and numbers beyond float32 (they become Inf there)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise argparse.ArgumentTypeError(
            f"expected a finite number (|x| <= {FLOAT32_MAX:.3g}), got {text!r}"
        )
    return value


def finite_float(text: str) -> float:
    """An argparse `type` accepting finite numbers (no nan or inf, within float32's range)."""
    return _number(text)


def non_negative_float(text: str) -> float:
    """An argparse `type` accepting finite numbers >= 0."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse `type` accepting finite numbers > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def unit_float(text: str) -> float:
    """An argparse `type` accepting numbers in [0, 1]."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def finite_range(text: str) -> str:
    """An argparse `type` for a sweep range ("start:stop:step" or "a,b,c") of finite numbers.

    Returns the text unchanged (`kerasmorph.sweeps.parse_range` reads it);
    refuses nan, inf and numbers beyond float32 here, naming the part.
    """
    parts = text.split(":") if ":" in text else [part for part in text.split(",") if part.strip()]
    for part in parts:
        try:
            _number(part)
        except argparse.ArgumentTypeError as error:
            raise argparse.ArgumentTypeError(f"{error} in the range {text!r}") from None
    return text


def resolve_schedule(args: argparse.Namespace, default: str) -> str:
    """The --schedule name, or `default`; a ValueError lists the valid names."""
    name = args.schedule or default
    get_schedule(name)
    return name


def own_arguments() -> argparse.ArgumentParser:
    """An empty parent for a command's own arguments (listed before the shared ones)."""
    return argparse.ArgumentParser(add_help=False)


def model_arguments() -> argparse.ArgumentParser:
    """The "model" group: which model, its size, weights, precision and compilation."""
    parser = own_arguments()
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=AUTO_MODEL,
        help=(
            f"preset: {', '.join(PRESETS)}, or a converted checkpoint's directory, or "
            f"'{AUTO_MODEL}' (default): sd1 when its weight files are on disk, else the "
            "offline 'shapes' toy model shipped with kerasmorph"
        ),
    )
    group.add_argument(
        "--height", type=positive_int, help="image height, a multiple of 64 (default: the model's)"
    )
    group.add_argument(
        "--width", type=positive_int, help="image width, a multiple of 64 (default: the model's)"
    )
    group.add_argument("--weights-dir", help="directory searched first for weight files")
    group.add_argument(
        "--embedding",
        action="append",
        default=[],
        metavar="FILE",
        help="textual-inversion file (A1111 .pt/.safetensors or diffusers "
        "learned_embeds) whose token prompts may use (repeatable)",
    )
    group.add_argument(
        "--precision",
        choices=PRECISION_OPTIONS,
        default="auto",
        help=(
            "dtype policy of the text encoder and UNet (the VAE stays float32). "
            "'auto' (default): the fastest safe choice for the device, shown by "
            "`kerasmorph info` (bf16 UNet without XLA on AMX/AVX512-BF16 CPUs, "
            "mixed_float16 on GPU, mixed_bfloat16 on TPU, else float32); "
            "'float32' reproduces KerasCV's numbers"
        ),
    )
    group.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            "compile the denoising step and decoder with XLA (default: as the "
            "precision plan says: on, except the bf16 CPU step)"
        ),
    )
    group.add_argument(
        "--no-cache",
        dest="compile_cache",
        action="store_false",
        help=(
            "do not keep XLA's compiled steps in ~/.cache/kerasmorph/xla for the next "
            "run (also $KERASMORPH_NO_CACHE=1; the folder follows $KERASMORPH_CACHE_DIR)"
        ),
    )
    return parser


def sampling_arguments(
    guidance: float = DEFAULT_GUIDANCE, *, seed: bool = True, batch_size: bool = True
) -> argparse.ArgumentParser:
    """The "sampling" group: steps, guidance, seed, negative and long prompts, batch size.

    Args:
        guidance: the default of --guidance.
        seed: whether the command draws noise (--seed).
        batch_size: whether the command renders several images (--batch-size).
    """
    parser = own_arguments()
    group = parser.add_argument_group("sampling")
    group.add_argument("--steps", type=positive_int, default=50, help="denoising steps")
    group.add_argument(
        "--guidance", type=finite_float, default=guidance, help="unconditional guidance scale"
    )
    if seed:
        group.add_argument("--seed", type=non_negative_int, default=0, help="noise seed")
    group.add_argument(
        "--negative-prompt",
        default=None,
        metavar="TEXT",
        help="text of the unconditional pass, steered away from (default: the empty prompt)",
    )
    group.add_argument(
        "--long-prompts",
        action="store_true",
        help="encode prompts (and the negative prompt) over 77 tokens in 75-token "
        "chunks, concatenated as A1111 does, instead of failing",
    )
    if batch_size:
        group.add_argument(
            "--batch-size",
            type=positive_int,
            default=None,
            help="images per UNet batch (default: the device's for the image size)",
        )
    group.add_argument(
        "--scheduler",
        choices=sorted(SCHEDULERS),
        default="ddim",
        help="sampling algorithm (default: ddim, KerasCV's; see `kerasmorph info`)",
    )
    group.add_argument(
        "--scheduler-config",
        metavar="JSON",
        default=None,
        help="a diffusers scheduler_config.json (or a folder holding one) whose keys "
        "configure --scheduler (e.g. a model's timestep spacing or prediction type)",
    )
    return parser


def scheduler_of(args: argparse.Namespace):
    """`(name, config)` of the command's scheduler: --scheduler, configured by
    --scheduler-config when given (`kerasmorph.schedulers.config_from_diffusers`)."""
    from kerasmorph import schedulers

    if args.scheduler_config is None:
        return args.scheduler, {}
    return args.scheduler, schedulers.config_from_diffusers(args.scheduler_config, args.scheduler)


def build_scheduler(args: argparse.Namespace):
    """The scheduler to pass to the Explorer: a name, or one built from its config."""
    from kerasmorph import schedulers

    name, config = scheduler_of(args)
    return schedulers.get(name, **config) if config else name


def frames_argument(default: int) -> argparse.ArgumentParser:
    """--frames with a command's default, in the "walk" group."""
    parser = own_arguments()
    parser.add_argument_group("walk").add_argument(
        "--frames", type=positive_int, default=default, help="frames"
    )
    return parser


def schedule_argument() -> argparse.ArgumentParser:
    """--schedule, the spacing of a walk's frames, in the "walk" group."""
    parser = own_arguments()
    parser.add_argument_group("walk").add_argument(
        "--schedule",
        default=None,
        help=f"spacing of the frames: {', '.join(SCHEDULES)} (default: the command's, "
        "linear; ease for morph-seeds)",
    )
    return parser


def output_arguments(*, resume: bool = True) -> argparse.ArgumentParser:
    """The "output" group of the walk commands: --out and how frames are written.

    Args:
        resume: whether a directory --out is a resumable render (--resume,
            --overwrite); without, its frames are written over.
    """
    parser = own_arguments()
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out",
        required=True,
        help="the suffix picks the format: .gif, .mp4, an image (.png/.jpg/.webp) "
        "for a grid of the frames, or a directory (no suffix) of PNG frames"
        + ("" if resume else " (frames of the same names replaced)"),
    )
    output.add_argument("--fps", type=positive_float, default=10.0, help="GIF/MP4 frame rate")
    output.add_argument(
        "--rubber-band",
        action="store_true",
        help="GIF: play forwards then backwards (frames + frames[2:-1] reversed)",
    )
    if not resume:
        return parser
    choice = output.add_mutually_exclusive_group()
    choice.add_argument(
        "--resume",
        dest="overwrite",
        action="store_false",
        help="(default) a directory --out is a resumable render: finished frames are kept",
    )
    choice.add_argument(
        "--overwrite",
        dest="overwrite",
        action="store_true",
        help="replace a render directory made with other settings",
    )
    parser.set_defaults(overwrite=False)
    return parser


def strategy_argument() -> argparse.ArgumentParser:
    """--strategy, how frames are spread over devices and workers."""
    parser = own_arguments()
    parser.add_argument(
        "--strategy",
        choices=("none", "mirrored", "tpu", "multiworker"),
        default="none",
        help="mirrored: every local GPU (or device); tpu: a Cloud/Colab TPU; "
        "multiworker: this worker's share of the frames, from TF_CONFIG",
    )
    return parser


def quiet_argument() -> argparse.ArgumentParser:
    """--quiet, no progress bar."""
    parser = own_arguments()
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def fit_argument() -> argparse.ArgumentParser:
    """--fit, the policy that brings input images to the model size."""
    parser = own_arguments()
    parser.add_argument(
        "--fit",
        choices=("resize", "center-crop", "pad"),
        default="resize",
        help="how input images are brought to the model size (default: resize)",
    )
    return parser


def adaptive_arguments() -> argparse.ArgumentParser:
    """The "adaptive spacing" group of the commands that render a 1-D path."""
    parser = own_arguments()
    group = parser.add_argument_group("adaptive spacing")
    group.add_argument(
        "--adaptive",
        type=positive_float,
        metavar="THRESHOLD",
        default=None,
        help="bisect where neighbouring frames differ by more than THRESHOLD (in the unit "
        "of --adaptive-metric, e.g. 0.05); --frames is the first grid",
    )
    group.add_argument(
        "--max-frames", type=positive_int, default=None, help="frame budget of --adaptive"
    )
    group.add_argument(
        "--respace",
        action="store_true",
        help="render --probe-frames uniformly, then --frames frames at equal steps of "
        "--adaptive-metric (DiffMorpher's reschedule); instead of --adaptive",
    )
    group.add_argument(
        "--probe-frames",
        type=int_at_least(2),
        default=None,
        help="frames of --respace's uniform probe (default: 2·--frames − 1)",
    )
    group.add_argument(
        "--adaptive-metric",
        choices=METRICS,
        default="mad",
        help="the change --adaptive bisects by and --respace evens out (kerasmorph.metrics): "
        "mad, l2 (root-mean-square), ssim (1 − SSIM), all on pixels in [0, 1]; latent_l2: "
        "VAE latents (needs the image encoder)",
    )
    return parser


@dataclasses.dataclass(frozen=True)
class SharedArguments:
    """The shared argument groups, each an `add_help=False` parent parser."""

    model: argparse.ArgumentParser  # --model, --height, --width, --weights-dir, ...
    sampling: argparse.ArgumentParser  # --steps, --guidance (7.5), --seed, ...
    quiet: argparse.ArgumentParser
    fit: argparse.ArgumentParser
    schedule: argparse.ArgumentParser
    output: argparse.ArgumentParser  # --out (file or render directory), --fps, ...
    strategy: argparse.ArgumentParser
    adaptive: argparse.ArgumentParser

    @classmethod
    def build(cls) -> SharedArguments:
        return cls(
            model=model_arguments(),
            sampling=sampling_arguments(),
            quiet=quiet_argument(),
            fit=fit_argument(),
            schedule=schedule_argument(),
            output=output_arguments(),
            strategy=strategy_argument(),
            adaptive=adaptive_arguments(),
        )

    def generating(self, *, batch_size: bool = True) -> list[argparse.ArgumentParser]:
        """The groups of a command that makes images: model, sampling, --quiet.

        Args:
            batch_size: False for a command that makes one image (no --batch-size).
        """
        sampling = self.sampling if batch_size else sampling_arguments(batch_size=False)
        return [self.model, sampling, self.quiet]

    def rendering(
        self,
        frames: int | None,
        *,
        guidance: float | None = None,
        schedule: bool = True,
        resume: bool = True,
        seed: bool = True,
    ) -> list[argparse.ArgumentParser]:
        """The groups of a command that renders frames.

        Args:
            frames: the default of --frames; None: no --frames (the command
                decides the number of frames itself).
            guidance: another default of --guidance than 7.5.
            schedule: False for a command whose frames have no spacing (no --schedule).
            resume: False for a command whose directory --out is not a
                resumable render (no --resume, --overwrite).
            seed: False for a command that draws no noise (no --seed).
        """
        sampling = self.sampling
        if guidance is not None or not seed:
            sampling = sampling_arguments(
                DEFAULT_GUIDANCE if guidance is None else guidance, seed=seed
            )
        walk = [frames_argument(frames)] if frames is not None else []
        walk += [self.schedule] if schedule else []
        output = self.output if resume else output_arguments(resume=False)
        return [*walk, output, self.strategy, self.model, sampling, self.quiet]
