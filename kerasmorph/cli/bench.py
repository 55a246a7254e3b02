"""`kerasmorph bench`: time KerasCV's generate_image against kerasmorph (and diffusers)."""

from __future__ import annotations

import argparse
import json
import sys

from kerasmorph.bench.config import MODELS
from kerasmorph.cli.arguments import SharedArguments, non_negative_int, positive_int
from kerasmorph.cli.session import Session
from kerasmorph.constants import PRECISION_OPTIONS
from kerasmorph.schedulers import SCHEDULERS


def register(subparsers, shared: SharedArguments) -> None:
    """Adds `bench` (its model options differ from the generating commands')."""
    bench = subparsers.add_parser(
        "bench",
        help="time KerasCV's generate_image against kerasmorph (and diffusers)",
        description=(
            "One process, one set of weights (real when found, else the full-size "
            "architecture with random weights), the same encodings and noise for "
            "every variant; warm-up excluded, rounds timed round-robin, medians."
        ),
    )
    bench.add_argument("--model", choices=MODELS, default="sd1")
    bench.add_argument(
        "--height", type=positive_int, help="image height (default 256; tiny, shapes: 128)"
    )
    bench.add_argument(
        "--width", type=positive_int, help="image width (default 256; tiny, shapes: 128)"
    )
    bench.add_argument("--steps", type=positive_int, default=5, help="denoising steps")
    bench.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="images per generation (default: the device's default for the size)",
    )
    bench.add_argument(
        "--precision",
        choices=PRECISION_OPTIONS,
        default="auto",
        help="precision of kerasmorph's fast variant (default: auto)",
    )
    bench.add_argument("--rounds", type=positive_int, default=3, help="timed rounds")
    bench.add_argument(
        "--compare",
        choices=("diffusers",),
        action="append",
        help="also time diffusers' UNet (PyTorch CPU; skipped with a reason if absent)",
    )
    bench.add_argument("--weights-dir", help="directory searched first for weight files")
    bench.add_argument("--seed", type=non_negative_int, default=0, help="noise seed")
    bench.add_argument(
        "--scheduler",
        choices=sorted(SCHEDULERS),
        default="ddim",
        help="scheduler of kerasmorph's variants (KerasCV runs its DDIM)",
    )
    bench.add_argument(
        "--time-to-quality",
        metavar="QUALITY_JSON",
        help="also time each scheduler at the step count where it reaches DDIM-50's "
        "distance to the reference, read from `python -m kerasmorph.quality --json` rows",
    )
    bench.add_argument(
        "--json", action="store_true", help="also print the report as one JSON line, last"
    )
    bench.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace, session: Session) -> int:
    from kerasmorph import bench

    config = bench.BenchConfig(
        model=args.model,
        img_height=args.height,
        img_width=args.width,
        num_steps=args.steps,
        batch_size=args.batch_size,
        precision=args.precision,
        num_rounds=args.rounds,
        compare=tuple(args.compare or ()),
        weights_dir=args.weights_dir,
        seed=args.seed,
        scheduler=args.scheduler,
        quality_rows=args.time_to_quality,
    )
    report = bench.run_bench(
        config, log=lambda message: print(f"kerasmorph bench: {message}", file=sys.stderr)
    )
    print(bench.format_table(report))
    if args.json:
        print(json.dumps(report))
    return 0
