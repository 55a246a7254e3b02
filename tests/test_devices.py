"""Device-aware precision, default batch sizes, retracing and memory (tiny)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import kerasmorph
from kerasmorph import devices
from kerasmorph import explorer as explorer_lib


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16 amx_bf16 sse\n")
    assert devices.cpu_flags(str(cpuinfo)) >= {"amx_bf16", "avx512_bf16"}
    assert devices.cpu_flags(str(tmp_path / "missing")) == frozenset()


@pytest.mark.parametrize(
    "device, unet, jit",
    [
        ("cpu-bf16", "bfloat16", False),
        ("cpu", "float32", True),
        ("gpu", "mixed_float16", True),
        ("tpu", "mixed_bfloat16", True),
    ],
)
def test_auto_plan_per_device(device, unet, jit):
    plan = devices.resolve_precision("auto", device=device)
    assert (plan.diffusion_model, plan.jit_compile) == (unet, jit)
    # Text encoder and VAE stay float32; the VAE keeps XLA everywhere.
    assert plan.text_encoder == plan.decoder == "float32"
    assert plan.decoder_jit_compile


def test_explicit_precision_and_jit_win():
    plan = devices.resolve_precision("auto", jit_compile=True, device="cpu-bf16")
    assert plan.diffusion_model == "bfloat16" and plan.jit_compile and plan.decoder_jit_compile
    plan = devices.resolve_precision("mixed_bfloat16", device="cpu-bf16")
    assert plan.text_encoder == plan.diffusion_model == "mixed_bfloat16"
    assert plan.jit_compile and plan.decoder == "float32"
    plan = devices.resolve_precision("float32", jit_compile=False, device="gpu")
    assert plan.diffusion_model == "float32" and not plan.jit_compile
    assert not plan.decoder_jit_compile
    with pytest.raises(ValueError, match="precision.*Received: precision='float8'"):
        devices.resolve_precision("float8", device="cpu")


def test_default_batch_size_rule():
    rule = devices.default_batch_size
    assert [rule(s, s, "cpu-bf16") for s in (128, 256, 512, 768)] == [4, 4, 2, 1]
    assert rule(256, 256, "cpu") == 4
    assert [rule(s, s, "gpu") for s in (256, 512, 768)] == [8, 4, 2]
    assert [rule(s, s, "tpu") for s in (512, 1024)] == [8, 4]


def test_explorer_describes_its_plan():
    explorer = kerasmorph.Explorer("tiny", precision="auto", verbose=False)
    described = explorer.describe()
    assert described["precision"] == "auto"
    assert described["precision_plan"]["device"] == devices.detect_device()
    assert described["default_batch_size"] == 4  # 128x128 on a CPU.
    assert explorer.jit_compile == described["precision_plan"]["jit_compile"]


needs_bf16_cpu = pytest.mark.skipif(
    devices.detect_device() != "cpu-bf16",
    reason="the bf16 plan of precision='auto' applies to CPUs with AMX/AVX512-BF16",
)


@needs_bf16_cpu
def test_auto_on_a_bf16_cpu_stores_the_unet_in_bf16_and_stays_close(tiny_explorer):
    import keras

    keras.config.set_dtype_policy("float32")
    explorer = kerasmorph.Explorer("tiny", precision="auto", verbose=False)
    assert explorer.jit_compile is False
    assert explorer.precision_plan.decoder_jit_compile is True
    unet = explorer.diffusion_model
    assert unet.dtype_policy.name == "bfloat16"
    assert {v.dtype for v in unet.weights} == {"bfloat16"}  # Cast once, at build.
    assert {v.dtype for v in explorer.decoder.weights} == {"float32"}
    assert {v.dtype for v in explorer.text_encoder.weights} == {"float32"}
    assert keras.config.dtype_policy().name == "float32"  # The caller's, unchanged.

    encodings = np.repeat(tiny_explorer.encode_text("a cat"), 4, axis=0)
    noise = tiny_explorer.noise(4, 0)
    reference = tiny_explorer.denoise(noise, encodings, num_steps=4)
    latents = explorer.denoise(noise, encodings, num_steps=4)
    assert latents.dtype == np.float32 and np.isfinite(latents).all()
    # Measured on random-weight tiny: relative error 0.050 at 4 steps, 0.027 at 20.
    error = np.linalg.norm(latents - reference) / np.linalg.norm(reference)
    assert 0 < error < 0.1
    # Same decoder weights, so the frames differ only through the latents
    # (measured mean |difference| 3.3 of 255).
    difference = np.abs(
        explorer.decode(latents).astype(int) - tiny_explorer.decode(reference).astype(int)
    )
    assert difference.mean() < 8


def test_nan_guard_names_the_requested_precision():
    explorer = kerasmorph.Explorer("tiny", precision="auto", verbose=False)
    latents = explorer.noise(1, 0)
    latents[0, 0, 0, 0] = np.nan
    with pytest.raises(explorer_lib.NonFiniteOutputError, match="precision='auto'"):
        explorer.denoise(latents, explorer.encode_text("x"), num_steps=1)


def test_150_frames_trace_the_step_once(monkeypatch):
    from kerasmorph import sampler as sampler_lib

    calls = []
    original = sampler_lib.timestep_embeddings
    monkeypatch.setattr(
        sampler_lib, "timestep_embeddings", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    explorer = kerasmorph.Explorer("tiny", jit_compile=False, verbose=False)
    encodings = np.repeat(explorer.encode_text("a cat"), 150, axis=0)
    noise = explorer.noise(150, 0)
    frames = list(explorer.render((encodings, noise), num_steps=1, batch_size=4))
    assert len(frames) == 150
    assert explorer.sampler.num_traces == 1  # 38 batches, the last one padded.
    assert explorer.sampler.num_steps_run == 38
    assert len(calls) == 1  # Timestep embeddings computed once per schedule.


_RSS_SCRIPT = textwrap.dedent(
    """
    import os, resource, sys
    os.environ["KERASMORPH_OFFLINE"] = "1"
    import numpy as np
    import kerasmorph

    explorer = kerasmorph.Explorer("tiny", jit_compile=False, verbose=False)
    num_frames = int(sys.argv[1])
    encodings = np.repeat(explorer.encode_text("a cat"), num_frames, axis=0)
    noise = explorer.noise(num_frames, 0)
    count = sum(1 for _ in explorer.render((encodings, noise), num_steps=2, batch_size=4))
    assert count == num_frames
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)


def _peak_rss_kib(num_frames: int) -> int:
    completed = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(num_frames)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(completed.stdout.strip().splitlines()[-1])


def test_peak_rss_does_not_grow_with_the_frame_count():
    eight, sixty_four = _peak_rss_kib(8), _peak_rss_kib(64)
    assert sixty_four <= 1.10 * eight, (eight, sixty_four)


def test_resized_shares_weights_and_matches_a_fresh_build(tiny_explorer):
    from kerasmorph.models import tiny

    other = tiny_explorer.resized(192, 64)
    assert (other.img_height, other.img_width) == (192, 64)
    assert (tiny_explorer.img_height, tiny_explorer.img_width) == (128, 128)
    assert other.text_encoder is tiny_explorer.text_encoder
    for name in ("diffusion_model", "decoder"):
        resized, original = getattr(other, name), getattr(tiny_explorer, name)
        assert resized is not original
        assert len(resized.weights) == len(original.weights)
        assert all(a is b for a, b in zip(resized.weights, original.weights))

    rng = np.random.default_rng(0)
    fresh_unet = tiny.build_diffusion_model(192, 64, seed=7)
    fresh_decoder = tiny.build_decoder(192, 64, seed=7)
    for fresh, original in (
        (fresh_unet, tiny_explorer.diffusion_model),
        (fresh_decoder, tiny_explorer.decoder),
    ):
        for target, source in zip(fresh.weights, original.weights, strict=True):
            target.assign(source.numpy())
    inputs = {
        "latent": rng.standard_normal((2, 24, 8, 4)).astype("float32"),
        "timestep_embedding": rng.standard_normal((2, 320)).astype("float32"),
        "context": rng.standard_normal((2, 77, 64)).astype("float32"),
    }
    np.testing.assert_allclose(
        np.asarray(other.diffusion_model(inputs)),
        np.asarray(fresh_unet(inputs)),
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        np.asarray(other.decoder(inputs["latent"])),
        np.asarray(fresh_decoder(inputs["latent"])),
        rtol=1e-5,
        atol=1e-5,
    )
    frames = other.generate_image(other.encode_text("x"), num_steps=1, seed=0)
    assert frames.shape == (1, 192, 64, 3)
    with pytest.raises(ValueError, match="img_width"):
        tiny_explorer.resized(128, 100)
