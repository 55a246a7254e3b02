"""Seconds per textual-inversion step on the full-size sd1 architecture (random weights).

    python scripts/textual_inversion_sd1_step.py SIZE PRECISION     # e.g. 128 float32, 256 auto

Builds KerasCV's sd1 components with random weights at SIZE², trains 4 steps
(batch 1, no accumulation) and prints the first step's seconds (build and
trace) and the mean of the other three.
"""

import sys
import time

import keras
import numpy as np
from keras_cv.src.models.stable_diffusion import (
    decoder,
    diffusion_model,
    image_encoder,
    text_encoder,
)

import kerasmorph
from kerasmorph import training


def main() -> None:
    size, precision = int(sys.argv[1]), sys.argv[2]
    keras.utils.set_random_seed(0)
    components = {
        "text_encoder": text_encoder.TextEncoder(77, download_weights=False),
        "diffusion_model": diffusion_model.DiffusionModel(size, size, 77, download_weights=False),
        "image_encoder": image_encoder.ImageEncoder(download_weights=False),
        "decoder": decoder.Decoder(size, size, download_weights=False),
    }
    explorer = kerasmorph.Explorer(
        "sd1", size, size, components=components, precision=precision, verbose=False
    )
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    times = []
    start = time.perf_counter()
    training.train_embedding(
        explorer, [image], "<x>", initializer_token="cat", num_steps=4,
        gradient_accumulation=1, verbose=False,
        on_step=lambda step, loss: times.append(time.perf_counter()),
    )  # fmt: skip
    first, rest = times[0] - start, float(np.mean(np.diff(times)))
    print(f"sd1 {size}x{size} {precision}: first step {first:.1f} s, then {rest:.2f} s/step")


if __name__ == "__main__":
    main()
