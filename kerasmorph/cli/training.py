"""`kerasmorph train-embedding`: textual inversion (`kerasmorph.training.train_embedding`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kerasmorph.cli.arguments import (
    non_negative_float,
    non_negative_int,
    own_arguments,
    positive_float,
    positive_int,
    unit_float,
)
from kerasmorph.cli.checks import check_outputs, model_inputs
from kerasmorph.cli.session import CommandError, Session


def crop_range(text: str) -> tuple[float, float]:
    """An argparse `type` for "LOW,HIGH": shares of the side with 0 < LOW <= HIGH <= 1."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, e.g. 0.8,1.0; got {text!r}") from None
    if not 0 < low <= high <= 1:
        raise argparse.ArgumentTypeError(f"expected 0 < LOW <= HIGH <= 1, got {text!r}")
    return low, high


def register(subparsers, shared) -> None:
    """Adds `train-embedding`."""
    own = own_arguments()
    own.add_argument(
        "images", nargs="+", metavar="IMAGES", help="a folder of images, or image files"
    )
    own.add_argument("--token", required=True, help='the new word, e.g. "<my-token>"')
    own.add_argument(
        "--init-word", required=True, help="a one-token word the vectors start from, e.g. cat"
    )
    own.add_argument(
        "--out",
        required=True,
        help="the embedding: .safetensors (diffusers learned_embeds), .pt (A1111) or .bin; "
        "the training record goes beside it as OUT.json",
    )
    own.add_argument("--steps", type=positive_int, default=3000, help="optimizer steps")
    own.add_argument("--num-vectors", type=positive_int, default=1, help="vectors per token")
    own.add_argument("--batch-size", type=positive_int, default=1, help="images per UNet call")
    own.add_argument(
        "--accumulation", type=positive_int, default=4, help="micro-batches per optimizer step"
    )
    own.add_argument("--learning-rate", type=positive_float, default=5e-4, help="peak rate")
    own.add_argument(
        "--final-learning-rate", type=non_negative_float, default=0.0, help="cosine decay's end"
    )
    own.add_argument(
        "--warmup-steps", type=non_negative_int, help="linear warm-up (default: 5%% of --steps)"
    )
    own.add_argument("--weight-decay", type=non_negative_float, default=1e-2, help="AdamW's")
    own.add_argument("--clip-norm", type=positive_float, default=1.0, help="gradient clip")
    own.add_argument(
        "--templates",
        choices=("object", "style"),
        help="caption templates: diffusers' object set ('a photo of a {}', ...; the "
        "default) or style set",
    )
    own.add_argument(
        "--template",
        action="append",
        default=[],
        metavar="TEXT",
        help="one's own caption template with {} for the token (repeatable; replaces --templates)",
    )
    own.add_argument(
        "--crop",
        type=crop_range,
        default=(0.8, 1.0),
        metavar="LOW,HIGH",
        help="share of each side a random crop keeps",
    )
    own.add_argument(
        "--flip",
        type=unit_float,
        default=0.5,
        help="probability of a horizontal flip (0 for concepts with a side)",
    )
    own.add_argument("--seed", type=non_negative_int, default=0, help="decides every draw")
    own.add_argument(
        "--checkpoint-every", type=positive_int, default=500, help="steps between checkpoints"
    )
    own.add_argument(
        "--checkpoint-dir", help="where checkpoints go (default: OUT-checkpoints beside --out)"
    )
    own.add_argument(
        "--preview-every",
        type=non_negative_int,
        default=0,
        help="steps between preview grids in the checkpoint folder (0: none)",
    )
    own.add_argument("--preview-prompt", help='the previews\' prompt (default: "a TOKEN")')
    own.add_argument(
        "--restart",
        action="store_true",
        help="start over even when the checkpoint folder holds a run to resume",
    )
    parser = subparsers.add_parser(
        "train-embedding",
        help="textual inversion: learn a new token from a few images",
        parents=[own, shared.fit, shared.model, shared.quiet],
    )
    parser.set_defaults(run=run_train_embedding, interrupted=interrupted_message)


def _checkpoint_dir(args: argparse.Namespace) -> Path:
    if args.checkpoint_dir:
        return Path(args.checkpoint_dir).expanduser()
    out = Path(args.out).expanduser()
    return out.with_name(f"{out.stem}-checkpoints")


def interrupted_message(args: argparse.Namespace) -> str:
    """What Ctrl-C says: the step whose checkpoint is kept, and how to resume."""
    import numpy as np

    from kerasmorph.training.checkpoints import STATE_FILE

    state = _checkpoint_dir(args) / STATE_FILE
    try:
        with np.load(state) as saved:
            step = int(saved["step"])
    except (OSError, ValueError, KeyError):
        return "interrupted before the first checkpoint (--checkpoint-every); nothing kept"
    return f"interrupted; the checkpoint of step {step} is kept in {state.parent}, rerun to resume"


def run_train_embedding(args: argparse.Namespace, session: Session) -> int:
    from kerasmorph import training

    inputs = {f"IMAGES #{i}": path for i, path in enumerate(args.images, 1)}
    check_outputs({"--out": args.out}, {**inputs, **model_inputs(args)})
    images = args.images[0] if len(args.images) == 1 else args.images
    if len(args.images) > 1 and any(Path(path).is_dir() for path in args.images):
        raise CommandError("Give one folder, or image files; not folders among several IMAGES.")
    if args.template and args.templates:
        raise CommandError("Give --templates or --template, not both.")
    explorer = session.own_explorer_for(args)
    result = training.train_embedding(
        explorer,
        images,
        args.token,
        initializer_token=args.init_word,
        templates=args.template or args.templates or "object",
        num_vectors=args.num_vectors,
        num_steps=args.steps,
        batch_size=args.batch_size,
        gradient_accumulation=args.accumulation,
        learning_rate=args.learning_rate,
        final_learning_rate=args.final_learning_rate,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        clip_norm=args.clip_norm,
        crop=args.crop,
        flip=args.flip,
        fit=args.fit,
        seed=args.seed,
        out=args.out,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        preview_every=args.preview_every,
        preview_prompt=args.preview_prompt,
        resume=not args.restart,
        verbose=not args.quiet,
    )
    record = result.record
    print(result.path)
    print(
        f"{record['steps']} steps in {record['seconds']} s; loss {record['loss'][0]:.4f} -> "
        f"{record['loss'][-1]:.4f}; record: {result.path.with_suffix('.json')}"
    )
    return 0
