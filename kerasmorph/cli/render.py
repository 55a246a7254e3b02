"""Rendering walks for the walk commands, and `kerasmorph render`, which resumes one.

A walk described by a `kerasmorph.renders.RenderSpec` renders into a resumable
directory (its manifest holds everything that decides a frame) when --out has
no suffix, else it streams into a GIF, MP4 or grid image.

`kerasmorph render DIR` rebuilds the original run from the manifest: the same
precision *request* (`--precision`, `--jit`), so the same plan resolves on the
same device (the step's and the decoder's XLA included), and the same
textual-inversion files, checked by content hash. It then compares everything
that decides the frames with the manifest and refuses, naming the field, when
anything differs, so resumed frames are byte-identical to the original run's.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from kerasmorph.cli.arguments import (
    SharedArguments,
    build_scheduler,
    own_arguments,
    scheduler_of,
)
from kerasmorph.cli.output import check_output_path, write_frames
from kerasmorph.cli.session import CommandError, ModelSettings, Session
from kerasmorph.errors import RenderDirectoryError

# How far a walk's frames go from --image when --strength is not given (depth2img's).
DEFAULT_WALK_STRENGTH = 0.8


def register(subparsers, shared: SharedArguments) -> None:
    """Adds `render`."""
    own = own_arguments()
    own.add_argument("manifest", help="a render directory or its manifest.json")
    own.add_argument("--weights-dir", help="directory searched first for weight files")
    own.add_argument(
        "--embedding",
        action="append",
        default=[],
        metavar="FILE",
        help="a textual-inversion file the render used, when it is no longer where the "
        "manifest says (matched by content; repeatable)",
    )
    own.add_argument("--overwrite", action="store_true", help=argparse.SUPPRESS)
    render = subparsers.add_parser(
        "render",
        help="re-run (resume) a saved render from its manifest",
        parents=[own, shared.strategy, shared.quiet],
    )
    render.set_defaults(run=run_render)


def run_render(args: argparse.Namespace, session: Session) -> int:
    from kerasmorph import renders

    try:
        spec = renders.load_spec(args.manifest)
    except RenderDirectoryError as error:
        raise CommandError(
            f"{error} Nothing to resume from: re-run the command that made it with "
            "--overwrite to start that render again."
        ) from None
    directory = Path(args.manifest)
    directory = directory if directory.is_dir() else directory.parent
    request = spec.precision_request
    settings = ModelSettings(
        model=spec.model,
        height=spec.img_height,
        width=spec.img_width,
        # The original flags; manifests written before they were recorded
        # hold only the step's resolved XLA flag.
        jit=request["jit_compile"] if "jit_compile" in request else spec.jit_compile,
        precision=request.get("precision", spec.precision.split(":")[0]),
        weights_dir=args.weights_dir,
        strategy=args.strategy,
        embeddings=tuple(str(path) for path in renders.embedding_files(spec, args.embedding)),
    )
    explorer = session.get_explorer(
        settings,
        verbose=not args.quiet,
        long_prompts=bool(spec.options.get("long_prompts", False)),
    )
    current = dataclasses.replace(
        spec,
        **renders.model_fields(explorer),
        embeddings=renders.embedding_records(settings.embeddings),
    )
    fields = renders.differing_fields(spec, current, explorer=explorer)
    if "weights" in fields:
        raise CommandError(
            f"The weights differ from the manifest's ({current.weights} here, {spec.weights} "
            f"in {directory}): the frames would not match. Point --weights-dir at them."
        )
    if fields:
        on_disk, here = spec.to_json(), current.to_json()
        details = ", ".join(f"{name}: {on_disk[name]!r} vs {here[name]!r} here" for name in fields)
        raise CommandError(
            f"{directory} was rendered with other settings than this machine resolves "
            f"({details}): the frames would not match. `kerasmorph info` shows this "
            "device's precision plan."
        )
    # The manifest's own spec: what decides the frames is checked equal above,
    # and the informational fields stay as recorded (nothing is rewritten).
    return render_directory(explorer, spec, directory, args)


def render_spec(
    args: argparse.Namespace,
    session: Session,
    kind: str,
    prompts: Sequence[str],
    seeds: Sequence[int],
    num_frames: int,
    schedule: str,
    options: dict,
    *,
    num_columns: int | None = None,
) -> int:
    """Renders a walk described by a RenderSpec: a resumable render directory
    when --out has no suffix, else streamed into a GIF, MP4 or grid image."""
    from kerasmorph import renders

    out = check_output_path(args.out)
    explorer = session.explorer_for(args)
    # Too-long prompts fail here, before a render directory's manifest is
    # written: the corrected run would otherwise be refused as another render.
    for prompt in prompts:
        explorer.tokenize(prompt)
    if args.long_prompts:
        # In the manifest, so a resumed render encodes the prompts the same way;
        # only when set, so manifests of short-prompt renders are unchanged.
        options = {**options, "long_prompts": True}
    depth = walk_depth_map(args, explorer)
    if depth is not None:
        # The normalised map itself (float32 values, exact in JSON): a resumed or
        # copied render directory needs no depth file.
        options = {**options, "depth_map": explorer.set_depth_map(depth).tolist()}
    if getattr(args, "image", None) is not None:
        # The image's latents, as the depth map: the render resumes without the file.
        latents = explorer.encode_image(explorer.load_images(args.image))
        strength = DEFAULT_WALK_STRENGTH if args.strength is None else args.strength
        options = {**options, "start_latents": latents[0].tolist(), "strength": strength}
    total = num_frames * num_frames if kind == "grid" else num_frames
    scheduler_name, scheduler_config = scheduler_of(args)
    spec = renders.RenderSpec(
        kind=kind,
        prompts=tuple(prompts),
        seeds=tuple(seeds),
        num_frames=num_frames,
        schedule=schedule,
        options=options,
        # Model, weights hash, size and the resolved precision plan (not
        # "auto": the policies and both XLA flags decide the frames' last bits).
        **renders.model_fields(explorer),
        num_steps=args.steps,
        unconditional_guidance_scale=args.guidance,
        negative_prompt=args.negative_prompt,
        batch_size=explorer.batch_size_for(total, args.batch_size),
        scheduler=scheduler_name,
        scheduler_config=scheduler_config,
        embeddings=renders.embedding_records(getattr(args, "embedding", ())),
        # What `kerasmorph render DIR` passes back to resolve the same plan.
        precision_request={"precision": args.precision, "jit_compile": args.jit},
    )
    if not out.suffix:
        return render_directory(explorer, spec, out, args)
    if args.strategy == "multiworker":
        raise CommandError(
            "--strategy multiworker writes each worker's frames into a shared render "
            f"directory: give --out a directory (no suffix). Received: --out {args.out}"
        )
    frames = explorer.render(
        renders.build_walk(explorer, spec),
        num_steps=spec.num_steps,
        unconditional_guidance_scale=spec.unconditional_guidance_scale,
        negative_prompt=spec.negative_prompt,
        batch_size=spec.batch_size,
        scheduler=renders.spec_scheduler(spec),
    )
    print(write_frames(out, frames, args, num_columns=num_columns))
    return 0


def walk_depth_map(args: argparse.Namespace, explorer):
    """The walk's depth map: --depth, else for a depth model with --image the map estimated
    from the image (--depth-estimator, or $KERASMORPH_DEPTH_ESTIMATOR); None without either."""
    depth, image = getattr(args, "depth", None), getattr(args, "image", None)
    estimator = getattr(args, "depth_estimator", None)
    if depth is not None or image is None:
        return depth
    if not explorer.takes_depth:
        if estimator is not None:
            raise CommandError(
                f"--depth-estimator needs a depth model (--model shapes-depth, a converted SD 2 "
                f"depth folder); {explorer.preset.name!r} has a 4-channel UNet"
            )
        return None
    return explorer.estimate_depth(image, estimator)


def render_directory(explorer, spec, directory: Path, args: argparse.Namespace) -> int:
    """Renders `spec` into `directory`: this worker's share of the frames not yet there."""
    from kerasmorph import renders

    shard = renders.shard_of_cluster() if args.strategy == "multiworker" else (0, 1)
    report = renders.render_to_directory(
        explorer, spec, directory, overwrite=args.overwrite, shard=shard
    )
    print(
        f"{directory}: rendered {len(report.rendered)} frames, "
        f"{len(report.skipped)} already done (worker {shard[0]} of {shard[1]})"
    )
    return 0


def render_walk(args: argparse.Namespace, session: Session, build_walk: Callable) -> int:
    """Renders the walk `build_walk(explorer)` returns (not described by a RenderSpec)."""
    out = check_output_path(args.out)
    explorer = session.explorer_for(args)
    walk = build_walk(explorer)
    frames = explorer.render(
        walk,
        num_steps=args.steps,
        unconditional_guidance_scale=args.guidance,
        negative_prompt=args.negative_prompt,
        batch_size=args.batch_size,
        scheduler=build_scheduler(args),
    )
    print(write_frames(out, frames, args))
    return 0
