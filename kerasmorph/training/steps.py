"""One textual-inversion micro-batch: its draw, and the loss and gradient of the new vectors.

`draw_batch` makes every random choice of a micro-batch from the step's numpy
generator (images, crops, flips, captions, the posterior's ε, t and ε), so a
resumed run draws what an unstopped one would. `LossAndGradient` is the
traced function: VAE posterior sample (or the fixed `shapes` encoder), noise
at t with KerasCV's ᾱ table, the text encoder with the new ids' rows swapped
for the trainable vectors, the UNet, and the MSE on ε (v for v-prediction).
"""

from __future__ import annotations

import math

import numpy as np

from kerasmorph.constants import NUM_TRAIN_TIMESTEPS, TIME_EMBEDDING_DIM
from kerasmorph.explorer import Explorer
from kerasmorph.models import textual_inversion as ti
from kerasmorph.training import data


class LossAndGradient:
    """One micro-batch's loss and its gradient with respect to the new vectors only.

    Args:
        explorer: the model (its text encoder already holds the new ids).
        first_id: the first new token id; the token's n ids follow it.
        vectors: the trainable float32 (n, D) variable.

    Call with `draw_batch`'s arrays; returns `(loss: float, gradient (n, D))`.
    """

    def __init__(self, explorer: Explorer, first_id: int, vectors):
        import tensorflow as tf

        from kerasmorph.models.rewire import LATENT_SCALE, posterior_encoder
        from kerasmorph.schedulers.ddim import kerascv_alphas_cumprod

        parts = ti.split_text_encoder(explorer.text_encoder)
        unet = explorer.diffusion_model
        image_encoder = explorer.image_encoder
        posterior = posterior_encoder(image_encoder)
        alphas = tf.constant(kerascv_alphas_cumprod(), dtype=tf.float32)
        half = TIME_EMBEDDING_DIM // 2
        freqs = tf.exp(-math.log(10000) * tf.cast(tf.range(half), tf.float32) / half)
        num_vectors = int(vectors.shape[0])
        v_prediction = explorer.prediction_type == "v_prediction"
        self.posterior = posterior is not None

        def loss_and_gradient(tokens, images, posterior_noise, timesteps, noise):
            if posterior is None:
                latents = tf.cast(image_encoder(images, training=False), tf.float32)
            else:
                moments = tf.cast(posterior(images, training=False), tf.float32)
                mean, log_variance = tf.split(moments, 2, axis=-1)
                std = tf.exp(0.5 * tf.clip_by_value(log_variance, -30.0, 20.0))
                latents = (mean + std * posterior_noise) * LATENT_SCALE
            alpha = tf.gather(alphas, timesteps)[:, None, None, None]
            noisy = tf.sqrt(alpha) * latents + tf.sqrt(1.0 - alpha) * noise
            target = (
                tf.sqrt(alpha) * noise - tf.sqrt(1.0 - alpha) * latents if v_prediction else noise
            )
            args = tf.cast(timesteps, tf.float32)[:, None] * freqs[None]
            embedding = tf.concat([tf.cos(args), tf.sin(args)], axis=-1)
            positions = tf.broadcast_to(tf.range(tf.shape(tokens)[1])[None], tf.shape(tokens))
            is_new = (tokens >= first_id) & (tokens < first_id + num_vectors)
            with tf.GradientTape() as tape:
                looked_up = parts.lookup(tokens)
                new = tf.gather(vectors, tf.clip_by_value(tokens - first_id, 0, num_vectors - 1))
                token_embeddings = tf.where(
                    is_new[..., None], tf.cast(new, looked_up.dtype), looked_up
                )
                context = parts.encode(token_embeddings, positions)
                prediction = unet(
                    {"latent": noisy, "timestep_embedding": embedding, "context": context},
                    training=False,
                )
                loss = tf.reduce_mean(tf.square(tf.cast(prediction, tf.float32) - target))
            # Dense: the gather's IndexedSlices would not add up across micro-batches.
            return loss, tf.convert_to_tensor(tape.gradient(loss, vectors))

        self._function = tf.function(loss_and_gradient, reduce_retracing=True)

    def __call__(self, *arrays):
        loss, gradient = self._function(*arrays)
        return float(loss), gradient


def draw_batch(rng: np.random.Generator, images: np.ndarray, settings, explorer: Explorer):
    """One micro-batch of `settings.batch_size` rows.

    Returns:
        `(tokens int32 (B, 77), pixels float32 (B, H, W, 3) in [−1, 1],
        posterior ε (B, h, w, 4), timesteps int32 (B,), ε (B, h, w, 4))`.
    """
    count = settings.batch_size
    chosen = rng.integers(0, len(images), size=count)
    batch = np.stack(
        [data.augment(images[i], rng, crop=settings.crop, flip=settings.flip) for i in chosen]
    )
    captions = [
        settings.templates[int(rng.integers(len(settings.templates)))].format(settings.token)
        for _ in range(count)
    ]
    tokens = np.asarray([explorer.tokenize(caption) for caption in captions], dtype=np.int32)
    h, w, c = explorer.latent_shape
    posterior_noise = rng.standard_normal((count, h, w, c)).astype(np.float32)
    timesteps = rng.integers(0, NUM_TRAIN_TIMESTEPS, size=count).astype(np.int32)
    noise = rng.standard_normal((count, h, w, c)).astype(np.float32)
    pixels = (batch.astype(np.float32) / 127.5 - 1.0).astype(np.float32)
    return tokens, pixels, posterior_noise, timesteps, noise
