"""The checkpoint commands: `convert`, `merge` and `similarity`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kerasmorph.cli.arguments import SharedArguments, finite_float
from kerasmorph.cli.checks import check_outputs
from kerasmorph.cli.session import CommandError, Session

# Suffixes that name a checkpoint file, never a diffusers folder.
_CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def register(subparsers, shared: SharedArguments) -> None:
    """Adds `convert`, `merge` and `similarity`."""
    convert = subparsers.add_parser(
        "convert",
        help="convert an SD 1.x/2.x checkpoint into KerasCV weight files",
        parents=[shared.quiet],
    )
    convert.add_argument(
        "checkpoint", help="a .safetensors/.ckpt single file or a diffusers folder"
    )
    convert.add_argument("--out", required=True, help="output directory")
    convert.add_argument(
        "--family", choices=("sd1", "sd2", "sd2-depth"), default=None, help="default: detected"
    )
    convert.add_argument("--overwrite", action="store_true", help="replace existing files")
    convert.add_argument(
        "--prediction-type",
        choices=("epsilon", "v_prediction"),
        default=None,
        help="what the UNet predicts, recorded for sampling (default: a diffusers folder's "
        "scheduler config, else epsilon; pass v_prediction for SD 2.x 768-v files)",
    )
    convert.set_defaults(run=run_convert)
    _register_merge(subparsers, shared)

    similarity = subparsers.add_parser(
        "similarity",
        help="per-layer cosine similarity of two checkpoints (single files or diffusers folders)",
        parents=[shared.quiet],
    )
    similarity.add_argument("a", help="a single-file checkpoint or a diffusers folder")
    similarity.add_argument("b", help="another, of the same kind")
    similarity.add_argument("--base", help="compare the task vectors A - BASE and B - BASE instead")
    similarity.add_argument("--plot", help="histogram image (.png)")
    similarity.add_argument("--csv", help="per-layer table (.csv)")
    similarity.set_defaults(run=run_similarity)


def _register_merge(subparsers, shared: SharedArguments) -> None:
    merge = subparsers.add_parser(
        "merge",
        help="merge checkpoints (task vectors, weighted sum, add difference): "
        "single files, or diffusers folders",
        description="Merges checkpoints tensor by tensor. Every input is a "
        "single-file checkpoint (.safetensors/.ckpt), or every input is a "
        "diffusers folder (unet/, vae/, text_encoder/); the two cannot be mixed. "
        "kerasmorph .npz folders (the shapes toys; `shapes`, `shapes-depth`, `shapes-black`, "
        "`shapes-outlined` name the shipped ones) merge too. Tensors whose shapes differ or "
        "that a model lacks are kept from the target (--target, else --base, or A) and "
        "listed. The depth recipe: --base SD2 --add DEPTH:0.5 --add STYLE:0.5 --target DEPTH "
        "--take-vae STYLE.",
        parents=[shared.quiet],
    )
    merge.add_argument("--base", help="the model the --add fine-tunes started from")
    merge.add_argument(
        "--target",
        metavar="PATH",
        help="with --add: the model (--base or an --add) whose tensor names, configs and "
        "shape-mismatched tensors the merge keeps (default --base); the depth recipe "
        "passes the depth model, so its 5-channel first convolution survives",
    )
    merge.add_argument(
        "--add",
        action="append",
        default=[],
        type=_model_and_coefficient,
        metavar="PATH:COEF",
        help="add COEF x (PATH - base) (repeatable)",
    )
    merge.add_argument(
        "--weighted-sum", nargs=2, metavar=("A", "B"), help="A x (1 - alpha) + B x alpha"
    )
    merge.add_argument(
        "--add-difference", nargs=3, metavar=("A", "B", "C"), help="A + alpha x (B - C)"
    )
    merge.add_argument("--alpha", type=finite_float, default=0.5, help="default 0.5")
    merge.add_argument(
        "--take-vae",
        metavar="FROM",
        help="copy the whole VAE from FROM (for folders: FROM's vae/ subfolder, config included)",
    )
    merge.add_argument("--half", action="store_true", help="store float16")
    merge.add_argument(
        "--out",
        required=True,
        help="single files: a .safetensors file, or a directory DIR getting "
        "DIR/merged.safetensors plus its KerasCV conversion (then use --model DIR). "
        "diffusers folders: a directory DIR that becomes the merged diffusers folder "
        "(weights merged, configs, scheduler and tokenizer copied from the target; "
        "diffusers' from_pretrained(DIR) reads it) plus its KerasCV conversion",
    )
    merge.add_argument(
        "--no-convert",
        action="store_true",
        help="with a directory --out, write the merged checkpoint only, not its KerasCV conversion",
    )
    merge.set_defaults(run=run_merge)


def _model_and_coefficient(text: str) -> tuple[str, float]:
    path, separator, value = text.rpartition(":")
    if not separator or not path:
        raise argparse.ArgumentTypeError(f"expected PATH:COEFFICIENT, got {text!r}")
    try:
        return path, finite_float(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected PATH:COEFFICIENT with a finite number, got {text!r}"
        ) from None


def run_convert(args: argparse.Namespace, session: Session) -> int:
    from kerasmorph import checkpoints

    check_outputs({"--out": args.out}, {"CHECKPOINT": args.checkpoint})
    result = checkpoints.convert(
        args.checkpoint,
        args.out,
        family=args.family,
        overwrite=args.overwrite,
        prediction_type=args.prediction_type,
        verbose=not args.quiet,
    )
    for component, path in result.files.items():
        print(f"{component:<15} {path}")
    print(f"preset {result.preset}: use --model {result.directory}")
    return 0


def _checkpoint_path(text: str) -> str:
    """A merge/similarity input: a path, or a toy preset's shipped weights folder."""
    from kerasmorph.models import bundled_weights_dir
    from kerasmorph.presets import PRESETS

    if not Path(text).expanduser().exists() and text in PRESETS:
        folder = bundled_weights_dir(PRESETS[text])
        if folder is not None:
            return str(folder)
    return text


def _same_path(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _merge_plan(
    args: argparse.Namespace,
) -> tuple[dict[str, str], str, list[tuple[float, str]], float]:
    """`merge`'s inputs by flag, and its target, terms and target coefficient.

    Every mode is `target_coef * target + sum(coefficient * model)`; see
    `kerasmorph.checkpoints.merge_checkpoints`.
    """
    if args.add:
        base = _checkpoint_path(args.base)
        adds = [(_checkpoint_path(path), coefficient) for path, coefficient in args.add]
        inputs = {"--base": base}
        inputs.update({f"--add #{index}": path for index, (path, _) in enumerate(adds, 1)})
        # base + sum c_i (model_i - base), tensor by tensor.
        terms = [(coefficient, path) for path, coefficient in adds]
        terms.append((-sum(coefficient for _, coefficient in adds), base))
        if args.target is None or _same_path(_checkpoint_path(args.target), base):
            return inputs, base, terms, 1.0
        target = _checkpoint_path(args.target)
        if not any(_same_path(target, path) for path, _ in adds):
            raise CommandError(
                "--target must be --base or one of the --add models (its tensors are "
                f"summed like theirs). Received: --target {args.target}"
            )
        # The same sum with another target: it only decides the names, the
        # configs and which model's tensors survive a shape mismatch.
        terms[-1] = (1.0 + terms[-1][0], base)
        return inputs, target, terms, 0.0
    if args.target is not None:
        raise CommandError(
            "--target goes with --base/--add; --weighted-sum and --add-difference keep A's tensors"
        )
    if args.weighted_sum is not None:
        a, b = map(_checkpoint_path, args.weighted_sum)
        inputs = {"--weighted-sum A": a, "--weighted-sum B": b}
        return inputs, a, [(args.alpha, b)], 1.0 - args.alpha
    a, b, c = map(_checkpoint_path, args.add_difference)
    inputs = {"--add-difference A": a, "--add-difference B": b, "--add-difference C": c}
    return inputs, a, [(args.alpha, b), (-args.alpha, c)], 1.0


def _merged_path(text: str, file_format: str) -> Path:
    """Where `merge` writes --out `text`: a .safetensors file, or a diffusers folder."""
    out = Path(text)
    if file_format == "compvis":
        if out.suffix and out.suffix != ".safetensors":
            raise CommandError(
                f"--out must be a .safetensors file or a directory. Received: --out {text}"
            )
        return out if out.suffix else out / "merged.safetensors"
    if out.suffix in _CHECKPOINT_SUFFIXES:
        kind = "diffusers folders" if file_format == "diffusers" else "kerasmorph .npz folders"
        raise CommandError(
            f"{kind} merge into a folder: --out must be a directory. Received: --out {text}"
        )
    return out


def run_merge(args: argparse.Namespace, session: Session) -> int:
    from kerasmorph import checkpoints

    modes = [bool(args.add), args.weighted_sum is not None, args.add_difference is not None]
    if sum(modes) != 1:
        raise CommandError(
            "give exactly one of --base with --add, --weighted-sum A B or --add-difference A B C"
        )
    if args.add and args.base is None:
        raise CommandError("--add needs --base (the model the fine-tunes started from)")
    inputs, target, terms, target_coef = _merge_plan(args)
    take_vae = _checkpoint_path(args.take_vae) if args.take_vae else None
    if take_vae:
        inputs["--take-vae"] = take_vae
    # Single files and diffusers folders name their tensors differently.
    file_format = checkpoints.check_same_format(inputs)
    merged = _merged_path(args.out, file_format)
    out = Path(args.out)
    # A folder merge replaces the whole --out folder; a single-file merge
    # writes MERGED (and, into a directory --out, the KerasCV conversion).
    folders = file_format != "compvis"
    outputs = {"--out": out} if folders else {"--out": out, "--out (merged file)": merged}
    check_outputs(outputs, inputs, directories=("--out",) if folders else ())
    report = checkpoints.merge_checkpoints(
        merged,
        target,
        terms,
        target_coef,
        take={"vae": take_vae} if take_vae else None,
        dtype="float16" if args.half else None,
        verbose=not args.quiet,
    )
    print(report.summary(), file=sys.stderr)
    print(merged)
    if file_format == "npz":  # Loads as it is: its manifest names the preset.
        preset = checkpoints.read_manifest(out)["preset"]
        print(f"preset {preset}: use --model {out}")
        return 0
    # A directory --out also gets the KerasCV conversion, beside the merge.
    if (file_format == "diffusers" or not out.suffix) and not args.no_convert:
        result = checkpoints.convert(merged, out, overwrite=True, verbose=not args.quiet)
        print(f"preset {result.preset}: use --model {result.directory}")
    return 0


def run_similarity(args: argparse.Namespace, session: Session) -> int:
    import contextlib

    import numpy as np

    from kerasmorph import checkpoints, merging, plotting
    from kerasmorph.progress import ProgressBar

    if args.plot is None and args.csv is None:
        raise CommandError("give --plot PNG and/or --csv CSV")
    inputs = {"A": _checkpoint_path(args.a), "B": _checkpoint_path(args.b)}
    if args.base is not None:
        inputs["--base"] = _checkpoint_path(args.base)
    checkpoints.check_same_format(inputs)
    check_outputs({"--plot": args.plot, "--csv": args.csv}, inputs)
    skipped: list[tuple[str, str]] = []
    with contextlib.ExitStack() as stack:
        a, b = (stack.enter_context(checkpoints.LazyTensors(inputs[key])) for key in ("A", "B"))
        if args.base is not None:
            base = stack.enter_context(checkpoints.LazyTensors(inputs["--base"]))
            a, b = merging.TaskVectorView(base, a), merging.TaskVectorView(base, b)
        progress = ProgressBar(len(a), verbose=not args.quiet, unit_name="tensor")
        rows = merging.cosine_similarities(a, b, on_tensor=progress, skipped=skipped)
    # Layers that cannot be compared (a depth model's first conv) are named, not dropped.
    for name, reason in skipped:
        print(f"not compared: {name}: {reason}", file=sys.stderr)
    if not rows:
        raise CommandError("the two checkpoints share no tensors of equal shape")
    cosines = np.asarray([row.cosine for row in rows])
    if np.isnan(cosines).all():
        raise CommandError(
            "every cosine is NaN: a compared model (or task vector) is all zeros, e.g. B is "
            "--base itself"
        )
    if args.csv is not None:
        Path(args.csv).write_text(merging.similarity_csv(rows))
        print(args.csv)
    if args.plot is not None:
        what = "task vectors" if args.base is not None else "weights"
        figure = plotting.plot_similarity_histogram(
            [row.cosine for row in rows],
            title=f"{Path(args.a).name} vs {Path(args.b).name}: cosine of the {what}",
        )
        figure.savefig(args.plot)
        print(args.plot)
    print(
        f"{len(rows)} layers, cosine median {np.nanmedian(cosines):.6f}, "
        f"min {np.nanmin(cosines):.6f}",
        file=sys.stderr,
    )
    return 0
