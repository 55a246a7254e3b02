"""Trains the `shapes` text encoder and UNet on CPU for a fixed wall time.

    python -m kerasmorph.shapes.train --out DIR --minutes 50 --seed 0

What a step does (batch 64 of 128×128 images from `kerasmorph.shapes.data`):

1. encode the images with the fixed encoder (`model.encode_images`) to
   scaled latents x0 (N, 16, 16, 4); replace ~10% of the captions with the
   empty prompt, tokenized as KerasCV does ([49406] + [49407] × 76);
2. draw t ~ U{0, …, 999} and ε ~ N(0, 1), and noise with KerasCV's own ᾱ
   table (`kerasmorph.schedulers.ddim.kerascv_alphas_cumprod`, the scaled-linear
   betas 0.00085 → 0.012): x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·ε;
3. predict ε from (x_t, the 320-d cos/sin timestep embedding KerasCV's
   sampler computes, the text encoding) and minimise the squared error,
   weighted per sample by min(SNR_t, 5) / SNR_t ("min-SNR-5", Hang et al.
   2023: it only down-weights the nearly clean timesteps, which speeds up
   training; the objective is still ε-prediction for KerasCV's DDIM);
4. AdamW (weight decay 0.01, global gradient clipping 1.0) with a linear
   warm-up over the first 2% of the time budget, then cosine decay from 1e-3
   to 1e-4 over the rest — the schedule follows elapsed time (or steps with
   `--steps`) so a busy machine still ends at the low learning rate;
5. an exponential moving average of the weights (decay min(0.999, (1+n)/(10+n))).

The EMA weights are written (float16 `.npz`, atomically) every
`--checkpoint-minutes` and at the end, as `text_encoder.npz` and
`diffusion_model.npz` with `training.json` (config, steps, loss, time); a
killed run keeps its last checkpoint. The loss is logged to stdout and
`DIR/log.jsonl`. The data stream and initial weights follow `--seed`; the
number of steps done in a time budget depends on the machine.

References:
    Tiankai Hang et al., "Efficient Diffusion Training via Min-SNR Weighting
    Strategy", ICCV 2023.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import numpy as np

from kerasmorph.atomic import atomic_path
from kerasmorph.constants import END_TOKEN, MAX_PROMPT_LENGTH, START_TOKEN
from kerasmorph.shapes import data as data_lib
from kerasmorph.shapes import model as model_lib


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings (the model's widths are a `ShapesConfig`).

    Attributes:
        batch_size: images per step.
        learning_rate: peak learning rate.
        final_learning_rate: learning rate at the end of the cosine decay.
        warmup_fraction: share of the budget spent warming up linearly.
        weight_decay: AdamW decoupled weight decay.
        clip_norm: global gradient-norm clip.
        ema_decay: maximum EMA decay.
        caption_dropout: probability of training on the empty prompt.
        min_snr_gamma: min-SNR weighting constant (0 disables the weighting).
        supersample: anti-aliasing sub-pixels per side of the training images.
        depth: train a depth model: each batch also holds the scenes' depth maps
            (`data.depth_map`, normalised by `images.depth_to_latent`),
            concatenated to the noisy latents as a 5th channel.
        background: the scenes' background, a `data.BACKGROUNDS` name
            (`"black"` trains the style fine-tune of the depth recipe).
        outline: draw a black outline around each shape (the outlined style
            fine-tune of the depth recipe, `shapes-outlined`).
        train_text_encoder: also train the text encoder (False keeps it as
            initialised: a fine-tune that changes only the UNet, as
            stable-diffusion-2-depth's did).
    """

    batch_size: int = 64
    learning_rate: float = 1e-3
    final_learning_rate: float = 1e-4
    warmup_fraction: float = 0.02
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    ema_decay: float = 0.999
    caption_dropout: float = 0.1
    min_snr_gamma: float = 5.0
    supersample: int = 2
    depth: bool = False
    background: str = "white"
    outline: bool = False
    train_text_encoder: bool = True


def _trained_weights(models: "_Models", config: TrainConfig, ema: bool = False) -> list:
    """The weights a run trains (or their EMA copies): the UNet's, and the text encoder's."""
    text_encoder = models.ema_text_encoder if ema else models.text_encoder
    unet = models.ema_unet if ema else models.unet
    text = text_encoder.trainable_weights if config.train_text_encoder else []
    return text + unet.trainable_weights


def tokenize_words(caption: str) -> list[int]:
    """Tokenizes a dataset caption to 77 CLIP ids, as `Explorer.tokenize` does.

    Every word of the dataset's captions is a single CLIP token, so a
    dictionary lookup gives exactly KerasCV's tokens (tests check it).
    """
    ids = [START_TOKEN] + [model_lib.VOCABULARY[word] for word in caption.split()] + [END_TOKEN]
    return ids + [END_TOKEN] * (MAX_PROMPT_LENGTH - len(ids))


def learning_rate_at(progress: float, config: TrainConfig) -> float:
    """Warm-up then cosine decay, as a function of the budget used, in [0, 1]."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < config.warmup_fraction:
        return config.learning_rate * (progress / config.warmup_fraction)
    decay = (progress - config.warmup_fraction) / (1 - config.warmup_fraction)
    cosine = 0.5 * (1 + math.cos(math.pi * decay))
    return config.final_learning_rate + (config.learning_rate - config.final_learning_rate) * cosine


# ---------------------------------------------------------------- data pipeline


def _batches(seed: int, config: TrainConfig, stop: threading.Event, out: queue.Queue) -> None:
    """Producer thread: (latents, tokens) batches drawn from one seeded stream."""
    rng = np.random.default_rng([seed, 1])
    empty = tokenize_words("")
    while not stop.is_set():
        images, captions, samples = data_lib.generate_batch(
            rng,
            config.batch_size,
            supersample=config.supersample,
            background=config.background,
            outline=config.outline,
        )
        tokens = np.asarray(
            [
                empty if rng.random() < config.caption_dropout else tokenize_words(text)
                for text in captions
            ],
            dtype=np.int32,
        )
        batch = (model_lib.encode_images(images), tokens)
        if config.depth:
            from kerasmorph.images import depth_to_latent

            depths = np.stack([data_lib.depth_map(sample) for sample in samples])
            batch += (depth_to_latent(depths, batch[0].shape[1:3]),)
        while not stop.is_set():
            try:
                out.put(batch, timeout=0.5)
                break
            except queue.Full:
                continue


def _start_batches(seed: int, config: TrainConfig) -> tuple[threading.Event, queue.Queue]:
    """Starts the producer thread; returns (its stop event, the queue of batches)."""
    stop = threading.Event()
    batches: queue.Queue = queue.Queue(maxsize=3)
    producer = threading.Thread(target=_batches, args=(seed, config, stop, batches), daemon=True)
    producer.start()
    return stop, batches


# ------------------------------------------------------------ models, optimizer


@dataclasses.dataclass(frozen=True)
class _Models:
    """The trained text encoder and UNet, and their exponential moving averages."""

    text_encoder: Any
    unet: Any
    ema_text_encoder: Any
    ema_unet: Any


def _build_models(
    model_config: model_lib.ShapesConfig, seed: int, init: str | None, log
) -> tuple[_Models, dict | None]:
    """Seeds Keras, builds the models (from `init`'s EMA weights if given), copies them to the EMA.

    Returns:
        `(models, the summary of the run continued from, or None)`.
    """
    from kerasmorph.backend import keras_module

    keras_module().utils.set_random_seed(seed)
    models = _Models(
        text_encoder=model_lib.build_text_encoder(model_config),
        unet=model_lib.build_diffusion_model(128, 128, model_config),
        ema_text_encoder=model_lib.build_text_encoder(model_config),
        ema_unet=model_lib.build_diffusion_model(128, 128, model_config),
    )
    init_summary = None
    if init is not None:
        model_lib.load_weights(models.text_encoder, os.path.join(init, "text_encoder.npz"))
        _load_unet(models.unet, os.path.join(init, "diffusion_model.npz"), model_config)
        with open(os.path.join(init, "training.json")) as file:
            init_summary = json.load(file)
        log(f"continuing from {init} ({init_summary.get('steps')} steps)")
    for target, source in zip(
        models.ema_text_encoder.weights + models.ema_unet.weights,
        models.text_encoder.weights + models.unet.weights,
    ):
        target.assign(source)
    return models, init_summary


def _load_unet(unet, path: str, model_config: model_lib.ShapesConfig) -> None:
    """Loads UNet weights; a 4-channel file into a 5-channel (depth) UNet gets the depth
    channel's input kernel at zero, so training starts from the 4-channel model's outputs."""
    try:
        model_lib.load_weights(unet, path)
        return
    except ValueError:
        if model_config.input_channels == 4:
            raise
    base = model_lib.build_diffusion_model(
        128, 128, dataclasses.replace(model_config, input_channels=4)
    )
    model_lib.load_weights(base, path)
    for target, source in zip(unet.weights, base.weights):
        value = source.numpy()
        if tuple(target.shape) != value.shape:  # The first conv's kernel (3, 3, 4 -> 5, C).
            value = np.concatenate([value, np.zeros_like(value[:, :, :1])], axis=2)
        target.assign(value)


def _build_optimizer(config: TrainConfig, trainable: list):
    """AdamW with decoupled weight decay (not on biases, norms, embeddings) and global clipping.

    The learning rate is set before every step (`learning_rate_at`).
    """
    from kerasmorph.backend import keras_module

    optimizer = keras_module().optimizers.AdamW(
        learning_rate=0.0,
        weight_decay=config.weight_decay,
        global_clipnorm=config.clip_norm,
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "embeddings"])
    optimizer.build(trainable)
    return optimizer


def _make_train_step(models: _Models, optimizer, config: TrainConfig, seed: int) -> Callable:
    """The compiled step: noise, min-SNR-weighted ε loss, AdamW update, EMA update.

    Returns:
        `train_step(latents (N, 16, 16, 4), tokens (N, 77)) -> (loss, mean squared error)`.
    """
    import tensorflow as tf

    from kerasmorph.schedulers.ddim import kerascv_alphas_cumprod

    text_encoder, unet = models.text_encoder, models.unet
    trainable = _trained_weights(models, config)
    ema_weights = _trained_weights(models, config, ema=True)
    alphas = tf.constant(kerascv_alphas_cumprod(), dtype=tf.float32)
    half = model_lib.TIME_EMBEDDING_DIM // 2
    freqs = tf.exp(-math.log(10000) * tf.cast(tf.range(half), tf.float32) / half)
    positions = tf.constant(
        np.tile(np.arange(MAX_PROMPT_LENGTH, dtype=np.int32), (config.batch_size, 1))
    )
    generator = tf.random.Generator.from_seed(seed)
    ema_step = tf.Variable(0.0, trainable=False, dtype=tf.float32)

    @tf.function
    def train_step(latents, tokens, depth=None):
        batch = tf.shape(latents)[0]
        timesteps = generator.uniform([batch], 0, 1000, dtype=tf.int32)
        noise = generator.normal(tf.shape(latents))
        alpha = tf.gather(alphas, timesteps)[:, None, None, None]
        noisy = tf.sqrt(alpha) * latents + tf.sqrt(1.0 - alpha) * noise
        model_input = noisy if depth is None else tf.concat([noisy, depth], axis=-1)
        args = tf.cast(timesteps, tf.float32)[:, None] * freqs[None]
        embedding = tf.concat([tf.cos(args), tf.sin(args)], axis=-1)
        snr = alpha[:, 0, 0, 0] / (1.0 - alpha[:, 0, 0, 0])
        if config.min_snr_gamma > 0:
            weight = tf.minimum(snr, config.min_snr_gamma) / snr
        else:
            weight = tf.ones_like(snr)
        with tf.GradientTape() as tape:
            context = text_encoder({"tokens": tokens, "positions": positions}, training=True)
            prediction = unet(
                {"latent": model_input, "timestep_embedding": embedding, "context": context},
                training=True,
            )
            error = tf.reduce_mean(tf.square(prediction - noise), axis=[1, 2, 3])
            loss = tf.reduce_mean(weight * error)
        gradients = tape.gradient(loss, trainable)
        optimizer.apply_gradients(zip(gradients, trainable))
        ema_step.assign_add(1.0)
        decay = tf.minimum(config.ema_decay, (1.0 + ema_step) / (10.0 + ema_step))
        for average, value in zip(ema_weights, trainable):
            average.assign(decay * average + (1.0 - decay) * value)
        return loss, tf.reduce_mean(error)

    return train_step


# ------------------------------------------------------ records and checkpoints


@dataclasses.dataclass
class _Progress:
    """Where a run stands: steps done, and the losses since the last log line."""

    start: float
    step: int = 0
    recent: list[float] = dataclasses.field(default_factory=list)
    recent_error: list[float] = dataclasses.field(default_factory=list)
    loss: float | None = None  # The mean loss of the last logged window.


def _initial_summary(
    seed: int,
    config: TrainConfig,
    model_config: model_lib.ShapesConfig,
    num_parameters: dict[str, int],
    init_summary: dict | None,
) -> dict:
    """The recipe part of `training.json`; checkpoints add steps, minutes, loss, finished."""
    summary = {
        "seed": seed,
        "train_config": dataclasses.asdict(config),
        "model_config": dataclasses.asdict(model_config),
        "parameters": num_parameters,
    }
    if init_summary is not None:
        # The whole recipe stays in one file: the run this one continued.
        summary["continued_from"] = init_summary
    return summary


def _write_json(path: str, payload: dict) -> None:
    with atomic_path(path, mode=0o644) as temporary, open(temporary, "w") as file:
        json.dump(payload, file, indent=2)


def _write_record(progress: _Progress, optimizer, log, log_file: TextIO) -> None:
    """Logs the mean loss and error since the last record (stdout and `log.jsonl`)."""
    progress.loss = float(np.mean(progress.recent))
    record = {
        "step": progress.step,
        "minutes": round((time.monotonic() - progress.start) / 60, 3),
        "loss": round(progress.loss, 5),
        "mse": round(float(np.mean(progress.recent_error)), 5),
        "learning_rate": float(optimizer.learning_rate.numpy()),
    }
    log(json.dumps(record))
    log_file.write(json.dumps(record) + "\n")
    log_file.flush()
    progress.recent, progress.recent_error = [], []


def _write_checkpoint(
    out: str, models: _Models, summary: dict, progress: _Progress, final: bool, log
) -> None:
    """Writes the EMA weights and `training.json` (the summary, updated in place)."""
    elapsed = time.monotonic() - progress.start
    model_lib.save_weights(models.ema_text_encoder, os.path.join(out, "text_encoder.npz"))
    model_lib.save_weights(models.ema_unet, os.path.join(out, "diffusion_model.npz"))
    summary.update(
        steps=progress.step, minutes=round(elapsed / 60, 2), loss=progress.loss, finished=final
    )
    _write_json(os.path.join(out, "training.json"), summary)
    log(f"checkpoint: step {progress.step}, {elapsed / 60:.1f} min, final={final}")


# ------------------------------------------------------------------ train loop


def _train_loop(
    train_step: Callable,
    optimizer,
    batches: queue.Queue,
    config: TrainConfig,
    progress: _Progress,
    *,
    steps: int | None,
    budget: float | None,
    log_every: int,
    checkpoint_minutes: float,
    checkpoint: Callable[[bool], None],
    log,
    log_file: TextIO,
) -> None:
    """Steps until the budget (`steps`, or `budget` seconds) is used, logging and checkpointing."""
    import tensorflow as tf

    last_checkpoint = progress.start
    while True:
        elapsed = time.monotonic() - progress.start
        fraction = progress.step / steps if steps is not None else elapsed / budget
        if fraction >= 1.0:
            break
        optimizer.learning_rate = learning_rate_at(fraction, config)
        loss, error = train_step(*(tf.constant(array) for array in batches.get()))
        progress.step += 1
        progress.recent.append(float(loss))
        progress.recent_error.append(float(error))
        if progress.step % log_every == 0 or progress.step == 1:
            _write_record(progress, optimizer, log, log_file)
        if time.monotonic() - last_checkpoint >= checkpoint_minutes * 60:
            checkpoint(False)
            last_checkpoint = time.monotonic()


def train(
    out: str,
    *,
    minutes: float | None = 50.0,
    steps: int | None = None,
    seed: int = 0,
    checkpoint_minutes: float = 5.0,
    config: TrainConfig = TrainConfig(),
    model_config: model_lib.ShapesConfig = model_lib.ShapesConfig(),
    log_every: int = 25,
    init: str | None = None,
    log=print,
) -> dict:
    """Trains for `minutes` of wall time (or exactly `steps` steps) and writes the EMA weights.

    Args:
        out: output directory (created).
        minutes: wall-time budget; the schedule follows elapsed time.
        steps: a fixed number of steps instead (the schedule follows steps).
        seed: seeds the initial weights and the data stream.
        checkpoint_minutes: interval between checkpoints.
        config: training settings.
        model_config: model widths.
        log_every: steps between log lines.
        init: a previous run's output directory to continue from (its EMA
            weights initialise both the trained and the averaged weights; the
            optimizer starts afresh with this run's schedule).
        log: where log lines go.

    Returns:
        The summary also written to `out/training.json`.
    """
    if (minutes is None) == (steps is None):
        raise ValueError(
            f"Pass exactly one of `minutes` and `steps`. Received: minutes={minutes}, steps={steps}"
        )
    os.makedirs(out, exist_ok=True)
    models, init_summary = _build_models(model_config, seed, init, log)
    num_parameters = {
        "text_encoder": int(models.text_encoder.count_params()),
        "diffusion_model": int(models.unet.count_params()),
    }
    log(f"parameters: {num_parameters}")
    optimizer = _build_optimizer(config, _trained_weights(models, config))
    train_step = _make_train_step(models, optimizer, config, seed)
    stop, batches = _start_batches(seed, config)

    summary = _initial_summary(seed, config, model_config, num_parameters, init_summary)

    def checkpoint(final: bool) -> None:
        _write_checkpoint(out, models, summary, progress, final, log)

    budget = None if minutes is None else minutes * 60.0
    progress = _Progress(start=time.monotonic())
    try:
        with open(os.path.join(out, "log.jsonl"), "a") as log_file:
            _train_loop(
                train_step,
                optimizer,
                batches,
                config,
                progress,
                steps=steps,
                budget=budget,
                log_every=log_every,
                checkpoint_minutes=checkpoint_minutes,
                checkpoint=checkpoint,
                log=log,
                log_file=log_file,
            )
    finally:
        stop.set()
    if progress.recent:
        progress.loss = float(np.mean(progress.recent))
    checkpoint(True)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kerasmorph.shapes.train",
        description="Train the kerasmorph `shapes` toy model on CPU.",
    )
    parser.add_argument("--out", required=True, help="output directory for weights and logs")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="wall-time budget (default 50)")
    budget.add_argument("--steps", type=int, help="train exactly this many steps instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    parser.add_argument(
        "--final-learning-rate", type=float, default=TrainConfig.final_learning_rate
    )
    parser.add_argument(
        "--init", help="continue from a previous run's output directory (its EMA weights)"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="the tiny model configuration (smoke tests)"
    )
    parser.add_argument(
        "--depth",
        action="store_true",
        help="train a depth model (5-channel UNet input; with --init, the new channel starts "
        "at zero)",
    )
    parser.add_argument(
        "--background",
        choices=tuple(data_lib.BACKGROUNDS),
        default="white",
        help="the scenes' background (black: the style fine-tune of the depth recipe)",
    )
    parser.add_argument(
        "--outline",
        action="store_true",
        help="draw a black outline around each shape (the outlined style fine-tune)",
    )
    parser.add_argument(
        "--freeze-text-encoder",
        action="store_true",
        help="train the UNet only (the text encoder keeps its --init weights)",
    )
    args = parser.parse_args(argv)
    minutes = args.minutes if args.minutes is not None or args.steps is not None else 50.0
    train(
        args.out,
        minutes=minutes,
        steps=args.steps,
        seed=args.seed,
        checkpoint_minutes=args.checkpoint_minutes,
        config=TrainConfig(
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            final_learning_rate=args.final_learning_rate,
            depth=args.depth,
            background=args.background,
            outline=args.outline,
            train_text_encoder=not args.freeze_text_encoder,
        ),
        init=args.init,
        model_config=dataclasses.replace(
            model_lib.TINY_CONFIG if args.tiny else model_lib.ShapesConfig(),
            input_channels=5 if args.depth else 4,
        ),
        log=lambda line: print(line, flush=True),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
