"""Textual-inversion training: new token vectors learned from a few images.

The recipe of keras.io's "Teach StableDiffusion new concepts via Textual
Inversion" and diffusers' `textual_inversion.py`, as a plain `tf.GradientTape`
loop on the Explorer's own components:

1. the token is added with its initial vectors copied from `initializer_token`
   (`Explorer.add_token_vectors`); its vectors are a separate float32
   variable, swapped in for the new ids' rows between the text encoder's token
   lookup and the rest of it (`models.textual_inversion.split_text_encoder`),
   so the gradient reaches nothing else: the other rows, the UNet and the VAE
   come out bit-identical (tests check it);
2. each step draws (from `(seed, step)` alone) `batch_size × gradient_accumulation`
   images with a random crop and flip, captions from the templates, the VAE
   posterior sample (`models.posterior_encoder`; the `shapes` encoder is
   deterministic), t ~ U{0, …, 999} and ε ~ N(0, 1), noises with KerasCV's ᾱ
   table, and takes the MSE of the UNet's prediction against ε (or v for a
   v-prediction model);
3. AdamW (β 0.9/0.999, ε 1e-8, weight decay, global-norm clipping) with a
   linear warm-up and cosine decay (`learning_rate_at`);
4. every `checkpoint_every` steps the vectors, the optimizer state and the
   loss curve go to `checkpoint_dir/state.npz` (atomically) with the
   embedding file of that step, and a run restarted with the same settings
   continues from there with the same draws and optimizer state: its vectors
   match a run never stopped to float rounding (~1e-6; TF's CPU kernels do not
   round bit-identically after another history).

The Explorer's precision plan is used as it is (bf16 or float16 UNets give
bf16/float16 gradients into the float32 vectors; float16 with loss scaling).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerasmorph._checks import check_int, check_positive
from kerasmorph.errors import InputError, NonFiniteOutputError
from kerasmorph.explorer import Explorer
from kerasmorph.export import save_json
from kerasmorph.models import textual_inversion as ti
from kerasmorph.progress import ProgressBar, muted
from kerasmorph.training import data, steps
from kerasmorph.training.checkpoints import Checkpoints

PREVIEW_IMAGES = 4


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """Everything that decides a trained embedding (a checkpoint resumes only with the same).

    Attributes: as `train_embedding`'s arguments; `templates` resolved.
    """

    token: str
    initializer_token: str
    num_vectors: int
    templates: tuple[str, ...]
    num_steps: int
    batch_size: int
    gradient_accumulation: int
    learning_rate: float
    final_learning_rate: float
    warmup_steps: int
    weight_decay: float
    clip_norm: float
    crop: tuple[float, float]
    flip: float
    fit: str
    seed: int

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclasses.dataclass(frozen=True)
class TrainedEmbedding:
    """What `train_embedding` returns.

    Attributes:
        embedding: the learned `TextualInversion` (token, float32 (n, D)).
        initial_vectors: float32 (n, D), the initializer word's vectors.
        losses: float (num_steps,): the mean loss of every step.
        learning_rates: float (num_steps,): the learning rate of every step.
        record: the training record (settings, model, steps, loss curve,
            seconds), as written to the JSON beside the output.
        path: the embedding file written, or None.
    """

    embedding: ti.TextualInversion
    initial_vectors: np.ndarray
    losses: np.ndarray
    learning_rates: np.ndarray
    record: dict[str, Any]
    path: Path | None


def learning_rate_at(step: int, settings: TrainingSettings) -> float:
    """The learning rate of 0-based `step`: linear warm-up, then cosine decay to the final rate."""
    peak, final = settings.learning_rate, settings.final_learning_rate
    if step < settings.warmup_steps:
        return peak * (step + 1) / settings.warmup_steps
    span = max(1, settings.num_steps - settings.warmup_steps)
    progress = min(1.0, (step - settings.warmup_steps) / span)
    return final + (peak - final) * 0.5 * (1 + math.cos(math.pi * progress))


def _check_settings(explorer: Explorer, settings: TrainingSettings) -> None:
    """Refuses what cannot train, before anything is built or read."""
    tokenizer = explorer.tokenizer
    base = getattr(tokenizer, "tokenizer", tokenizer)
    names = [settings.token] + [f"{settings.token}_{i}" for i in range(1, settings.num_vectors)]
    for name in names:
        if name in base.encoder:
            raise InputError(
                f"The token {name!r} is already in the vocabulary; choose a new word, "
                f"e.g. '<{settings.token.strip('<>')}-concept>'. Received: token={settings.token!r}"
            )
    pieces = tokenizer.encode(settings.initializer_token)[1:-1]
    if len(pieces) != 1:
        words = [base.decoder.get(i, str(i)) for i in pieces]
        raise InputError(
            "The initializer word must be one token of the vocabulary; "
            f"{settings.initializer_token!r} is {len(pieces)} tokens {words}. "
            "Pick a single related word (e.g. 'cat', 'toy', 'painting')."
        )
    if not 0 < settings.learning_rate <= 1:
        raise InputError(
            "`learning_rate` must be in (0, 1] (5e-4 is diffusers' default for SD 1.5). "
            f"Received: learning_rate={settings.learning_rate!r}"
        )
    if not 0 <= settings.final_learning_rate <= settings.learning_rate:
        raise InputError(
            "`final_learning_rate` must be in [0, learning_rate]. "
            f"Received: final_learning_rate={settings.final_learning_rate!r}"
        )
    low, high = settings.crop
    if not 0 < low <= high <= 1:
        raise InputError(
            f"`crop` must be (low, high) with 0 < low <= high <= 1. Received: crop={settings.crop}"
        )
    if not 0 <= settings.flip <= 1:
        raise InputError(f"`flip` must be in [0, 1]. Received: flip={settings.flip!r}")
    if settings.warmup_steps > settings.num_steps:
        raise InputError(
            f"`warmup_steps` must be at most num_steps ({settings.num_steps}). "
            f"Received: warmup_steps={settings.warmup_steps}"
        )


def _non_negative(name: str, value: Any) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise InputError(f"`{name}` must be a finite number >= 0. Received: {name}={value!r}")
    return value


def _check_out(out: str | os.PathLike | None) -> Path | None:
    if out is None:
        return None
    out = Path(out).expanduser()
    if out.suffix not in ti.SAVE_FORMATS:
        accepted = ", ".join(ti.SAVE_FORMATS)
        raise InputError(f"The output must end in {accepted}. Received: out={str(out)!r}")
    if not out.parent.is_dir():
        raise InputError(
            f"The output's folder {out.parent} does not exist; create it first. "
            f"Received: out={str(out)!r}"
        )
    return out


def _build_optimizer(settings: TrainingSettings, vectors, use_loss_scale: bool):
    from kerasmorph.backend import keras_module

    keras = keras_module()
    optimizer = keras.optimizers.AdamW(
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        global_clipnorm=settings.clip_norm,
    )
    if use_loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build([vectors])
    return optimizer


def _preview(explorer: Explorer, settings: TrainingSettings, vectors, directory, step, prompt):
    """A grid of `PREVIEW_IMAGES` images of `prompt` with the vectors of `step`."""
    from kerasmorph import export, plotting

    explorer.set_token_vectors(settings.token, vectors)
    with muted(explorer):
        frames = explorer.text_to_image(
            prompt, batch_size=PREVIEW_IMAGES, num_steps=25, seed=settings.seed
        )
    export.save_frame(directory / f"preview-steps-{step:06d}.png", plotting.make_grid(frames))


def train_embedding(
    explorer: Explorer,
    images: Any,
    token: str,
    *,
    initializer_token: str,
    templates: str | Sequence[str] = "object",
    num_vectors: int = 1,
    num_steps: int = 3000,
    batch_size: int = 1,
    gradient_accumulation: int = 4,
    learning_rate: float = 5e-4,
    final_learning_rate: float = 0.0,
    warmup_steps: int | None = None,
    weight_decay: float = 1e-2,
    clip_norm: float = 1.0,
    crop: tuple[float, float] = (0.8, 1.0),
    flip: float = 0.5,
    fit: str = "resize",
    seed: int = 0,
    out: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 500,
    preview_every: int = 0,
    preview_prompt: str | None = None,
    resume: bool = True,
    verbose: bool | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainedEmbedding:
    """Learns input vectors for a new token from a few images (textual inversion).

    Only the new vectors train; the Explorer keeps the token afterwards, with
    the learned vectors, so `explorer.text_to_image(f"a {token}")` draws it.

    Args:
        explorer: the model to teach (any preset: `sd1`, `sd2`, a converted
            folder, `shapes`, `tiny`).
        images: a folder of images, paths, arrays or PIL images (3–16 is usual).
        token: the new word, e.g. `"<cat-toy>"` (lowercased; no spaces; not
            already in the vocabulary).
        initializer_token: a one-token word the vectors start from.
        templates: `"object"`, `"style"` (diffusers' sets) or one's own list
            of captions with `{}` for the token.
        num_vectors: prompt positions the token takes (1–8).
        num_steps: optimizer steps.
        batch_size: images per UNet call.
        gradient_accumulation: micro-batches per optimizer step (diffusers: 4).
        learning_rate: the peak learning rate, in (0, 1].
        final_learning_rate: the cosine decay's end, in [0, learning_rate].
        warmup_steps: linear warm-up steps; default 5% of `num_steps`.
        weight_decay: AdamW's decoupled weight decay.
        clip_norm: the gradient's global-norm clip.
        crop: the share of each side a random crop keeps, (low, high).
        flip: probability of a horizontal flip (0 when the concept has a side).
        fit: how images come to the model size (`kerasmorph.images`).
        seed: decides every draw (images, crops, captions, t, ε).
        out: the embedding file to write (`.safetensors` diffusers,
            `.pt` A1111, `.bin` diffusers torch), with `OUT.json` (the record).
        checkpoint_dir: where checkpoints go; default `OUT-checkpoints` beside
            `out` (none when both are None).
        checkpoint_every: steps between checkpoints (and at the end).
        preview_every: steps between preview grids in `checkpoint_dir` (0: none).
        preview_prompt: the previews' prompt; default `"a {token}"`.
        resume: continue from `checkpoint_dir`'s state when there is one.
        verbose: show a progress bar with the loss; default the Explorer's.
        on_step: called with (steps done, loss) after every step.

    Returns:
        A `TrainedEmbedding`.

    Raises:
        InputError: for bad arguments, no readable image, a token already in
            the vocabulary, an initializer of several tokens, a missing output
            folder, or a checkpoint of other settings.
        NonFiniteOutputError: when the loss turns NaN/Inf (the last good
            checkpoint stays).

    Example:

    ```python
    explorer = kerasmorph.Explorer("shapes")
    result = kerasmorph.training.train_embedding(
        explorer, "concept/", "<my-shape>", initializer_token="picture",
        templates=["a {}"], num_steps=300, flip=0, out="my-shape.safetensors")
    images = explorer.text_to_image("a <my-shape>", batch_size=4)
    ```
    """
    num_steps = check_int("num_steps", num_steps, 1, 1_000_000)
    settings = TrainingSettings(
        token=ti.check_token(token),
        initializer_token=str(initializer_token),
        num_vectors=check_int("num_vectors", num_vectors, 1, 8),
        templates=data.resolve_templates(templates),
        num_steps=num_steps,
        batch_size=check_int("batch_size", batch_size, 1, 256),
        gradient_accumulation=check_int("gradient_accumulation", gradient_accumulation, 1, 256),
        learning_rate=float(learning_rate),
        final_learning_rate=float(final_learning_rate),
        warmup_steps=(
            max(1, num_steps // 20)
            if warmup_steps is None
            else check_int("warmup_steps", warmup_steps, 0)
        ),
        weight_decay=_non_negative("weight_decay", weight_decay),
        clip_norm=float(check_positive("clip_norm", clip_norm)),
        crop=(float(crop[0]), float(crop[1])),
        flip=float(flip),
        fit=str(fit),
        seed=check_int("seed", seed, 0),
    )
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, 1)
    preview_every = check_int("preview_every", preview_every, 0)
    _check_settings(explorer, settings)
    out = _check_out(out)
    if checkpoint_dir is None and out is not None:
        checkpoint_dir = out.with_name(f"{out.stem}-checkpoints")
    checkpoints = Checkpoints(
        None if checkpoint_dir is None else Path(checkpoint_dir).expanduser(),
        settings,
        out.suffix if out is not None else ".safetensors",
    )
    state = checkpoints.load() if resume else None
    pixels = data.load_concept_images(
        images, (explorer.img_height, explorer.img_width), fit=settings.fit
    )
    return _train(
        explorer, pixels, settings, checkpoints, state, out,
        checkpoint_every=checkpoint_every,
        preview_every=preview_every,
        preview_prompt=preview_prompt or f"a {settings.token}",
        verbose=explorer.verbose if verbose is None else bool(verbose),
        on_step=on_step,
    )  # fmt: skip


@dataclasses.dataclass
class _Run:
    """A run in progress: the trained variable, its optimizer and what it has done so far."""

    initial: np.ndarray
    vectors: Any
    optimizer: Any
    loss_and_gradient: steps.LossAndGradient
    losses: list[float]
    rates: list[float]
    start: int = 0
    seconds_before: float = 0.0
    last_saved: int | None = None


def _start_run(explorer: Explorer, settings: TrainingSettings, state: dict | None) -> _Run:
    """Adds the token (the initializer's vectors), builds the variable and optimizer, resumes."""
    from kerasmorph.backend import keras_module

    initializer_id = explorer.tokenizer.encode(settings.initializer_token)[1]
    row = ti.token_embedding_matrix(explorer.text_encoder)[initializer_id]
    initial = np.repeat(row[None], settings.num_vectors, axis=0)
    explorer.add_token_vectors(settings.token, initial)
    first_id = ti.added_token_ids(explorer.tokenizer, settings.token)[0]
    vectors = keras_module().Variable(initial, dtype="float32", name="token_vectors")
    use_loss_scale = explorer.diffusion_model.compute_dtype == "float16"
    run = _Run(
        initial=initial,
        vectors=vectors,
        optimizer=_build_optimizer(settings, vectors, use_loss_scale),
        loss_and_gradient=steps.LossAndGradient(explorer, first_id, vectors),
        losses=[],
        rates=[],
    )
    if state is not None:
        run.start = run.last_saved = int(state["step"])
        vectors.assign(state["vectors"])
        for index, variable in enumerate(run.optimizer.variables):
            variable.assign(state[f"optimizer_{index}"])
        run.losses, run.rates = list(state["losses"]), list(state["learning_rates"])
        run.seconds_before = float(state["seconds"])
    return run


def _optimizer_step(
    run: _Run, step: int, pixels: np.ndarray, settings: TrainingSettings, explorer: Explorer,
    checkpoints: Checkpoints,
) -> float:  # fmt: skip
    """Accumulates the micro-batches' gradients and applies them; returns the mean loss."""
    rng = data.step_rng(settings.seed, step)
    total_loss, total_gradient = 0.0, None
    for _ in range(settings.gradient_accumulation):
        loss, gradient = run.loss_and_gradient(*steps.draw_batch(rng, pixels, settings, explorer))
        total_loss += loss / settings.gradient_accumulation
        gradient = gradient / settings.gradient_accumulation
        total_gradient = gradient if total_gradient is None else total_gradient + gradient
    rate = learning_rate_at(step, settings)
    if not math.isfinite(total_loss):
        kept = (
            "no checkpoint was written"
            if run.last_saved is None
            else f"the last good checkpoint (step {run.last_saved}) stays in "
            f"{checkpoints.directory}"
        )
        raise NonFiniteOutputError(
            f"The loss became {total_loss} at step {step + 1}; {kept}. Lower the learning "
            f"rate (it was {rate:.3g}) or use precision='float32'."
        )
    run.optimizer.learning_rate = rate
    run.optimizer.apply_gradients([(total_gradient, run.vectors)])
    run.losses.append(total_loss)
    run.rates.append(rate)
    return total_loss


def _train(
    explorer: Explorer,
    pixels: np.ndarray,
    settings: TrainingSettings,
    checkpoints: Checkpoints,
    state: dict[str, Any] | None,
    out: Path | None,
    *,
    checkpoint_every: int,
    preview_every: int,
    preview_prompt: str,
    verbose: bool,
    on_step: Callable[[int, float], None] | None,
) -> TrainedEmbedding:
    run = _start_run(explorer, settings, state)
    started = time.perf_counter()
    seconds = run.seconds_before
    # The bar shows the loss's moving average over about 50 steps (one step's is noisy).
    bar = ProgressBar(
        settings.num_steps, verbose=verbose, unit_name="step", stateful_metrics=("loss",)
    )
    bar.advance(run.start)
    smoothed = None
    for step in range(run.start, settings.num_steps):
        loss = _optimizer_step(run, step, pixels, settings, explorer, checkpoints)
        done = step + 1
        smoothed = loss if smoothed is None else 0.98 * smoothed + 0.02 * loss
        bar.advance(1, values=[("loss", smoothed)])
        seconds = run.seconds_before + time.perf_counter() - started
        if done % checkpoint_every == 0 or done == settings.num_steps:
            vectors = run.vectors.numpy()
            checkpoints.save(done, vectors, run.optimizer, run.losses, run.rates, seconds)
            run.last_saved = done if checkpoints.directory is not None else None
        if preview_every and checkpoints.directory and done % preview_every == 0:
            _preview(explorer, settings, run.vectors.numpy(), checkpoints.directory, done,
                     preview_prompt)  # fmt: skip
        if on_step is not None:
            on_step(done, loss)
    bar.finish()
    learned = run.vectors.numpy().astype(np.float32)
    explorer.set_token_vectors(settings.token, learned)
    record = {
        "settings": settings.to_json(),
        "model": {
            key: value
            for key, value in explorer.describe().items()
            if key in ("preset", "img_height", "img_width", "precision_plan", "weights")
        },
        "num_images": int(len(pixels)),
        "prediction_type": explorer.prediction_type,
        "posterior_sampled": run.loss_and_gradient.posterior,
        "steps": len(run.losses),
        "resumed_from": None if state is None else int(state["step"]),
        "seconds": round(seconds, 1),
        "loss": [round(float(v), 6) for v in run.losses],
        "learning_rate": [float(v) for v in run.rates],
    }
    embedding = ti.TextualInversion(settings.token, learned)
    if out is not None:
        ti.save_textual_inversion(out, embedding, step=len(run.losses))
        save_json(out.with_suffix(".json"), record)
    return TrainedEmbedding(
        embedding=embedding,
        initial_vectors=run.initial,
        losses=np.asarray(run.losses),
        learning_rates=np.asarray(run.rates),
        record=record,
        path=out,
    )
