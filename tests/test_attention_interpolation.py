"""AID's outer cross-attention interpolation (`kerasmorph.models.attention`) on `tiny` and `shapes`.

The rewired UNet's endpoints are compared bit for bit with the plain UNet:
at α = 0 (α = 1) the other endpoint's term is multiplied by an exact 0, so
eagerly and under XLA the sums are the plain UNet's numbers.
"""

import numpy as np
import pytest

from kerasmorph import models
from kerasmorph.models import attention

WIDTH = 64  # The tiny UNet's context width D.
BATCH = 3


@pytest.fixture(scope="module")
def unet():
    return models.tiny.build_diffusion_model(64, 64)


@pytest.fixture(scope="module")
def outer(unet):
    return models.interpolate_cross_attention(unet)


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    return {
        "latent": rng.standard_normal((BATCH, 8, 8, 4)).astype("float32"),
        "timestep_embedding": rng.standard_normal((BATCH, 320)).astype("float32"),
        "first": rng.standard_normal((BATCH, 77, WIDTH)).astype("float32"),
        "second": rng.standard_normal((BATCH, 77, WIDTH)).astype("float32"),
    }


def _run(model, arrays, context, rows=slice(None)):
    inputs = {
        "latent": arrays["latent"][rows],
        "timestep_embedding": arrays["timestep_embedding"][rows],
        "context": context,
    }
    return np.asarray(model(inputs, training=False), dtype=np.float32)


def _jit(model):
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def run(inputs, training=False):
        return model(inputs, training=training)

    return run


def test_the_rewired_unet_shares_every_variable_and_leaves_the_original_alone(unet, outer, arrays):
    assert [tensor.name for tensor in outer.inputs] == [tensor.name for tensor in unet.inputs]
    assert tuple(outer.get_layer(name="context").output.shape) == (None, 155, WIDTH)
    assert len(outer.weights) == len(unet.weights)
    assert all(new is old for new, old in zip(outer.weights, unet.weights))
    wrappers = [layer for layer in outer.layers if "outer_attention" in layer.name]
    originals = [layer for layer in unet.layers if "spatial_transformer" in layer.name]
    assert len(wrappers) == len(originals) == 4  # Down, middle, 2 up.
    assert all(w.transformer is o for w, o in zip(wrappers, originals))
    # The original still takes (B, 77, D) and computes what it did.
    before = _run(unet, arrays, arrays["first"])
    models.interpolate_cross_attention(unet)
    assert tuple(unet.get_layer(name="context").output.shape) == (None, 77, WIDTH)
    np.testing.assert_array_equal(_run(unet, arrays, arrays["first"]), before)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "xla"])
def test_alpha_0_and_1_are_the_plain_unet_on_each_endpoint_exactly(unet, outer, arrays, compiled):
    plain, mixed = (_jit(unet), _jit(outer)) if compiled else (unet, outer)
    first, second = arrays["first"], arrays["second"]
    # Rows with α = 0, 1, 0 in one batch.
    packed = attention.pack_contexts(first, second, [0.0, 1.0, 0.0])
    output = _run(mixed, arrays, packed)
    np.testing.assert_array_equal(output[[0, 2]], _run(plain, arrays, first)[[0, 2]])
    np.testing.assert_array_equal(output[1], _run(plain, arrays, second)[1])


def test_alpha_half_is_neither_endpoint_nor_the_lerped_context(unet, outer, arrays):
    first, second = arrays["first"], arrays["second"]
    output = _run(outer, arrays, attention.pack_contexts(first, second, 0.5))
    for other in (first, second, 0.5 * first + 0.5 * second):
        assert np.abs(output - _run(unet, arrays, other)).max() > 1e-2
    # Equal endpoints: the same output for any α (up to float32 rounding of (1 − α)·a + α·a).
    same = _run(outer, arrays, attention.pack_contexts(first, first, 0.37))
    np.testing.assert_allclose(same, _run(unet, arrays, first), rtol=1e-5, atol=1e-5)


def test_each_row_uses_its_own_alpha(outer, arrays):
    alphas = [0.2, 0.5, 0.9]
    together = _run(
        outer, arrays, attention.pack_contexts(arrays["first"], arrays["second"], alphas)
    )
    for row, alpha in enumerate(alphas):
        rows = slice(row, row + 1)
        alone = attention.pack_contexts(arrays["first"][rows], arrays["second"][rows], alpha)
        # A batch of 1 may take other kernels than a batch of 3: float32 rounding only.
        np.testing.assert_allclose(
            together[row], _run(outer, arrays, alone, rows)[0], rtol=1e-5, atol=1e-5
        )


def test_mixed_bfloat16_and_long_contexts(arrays):
    with models.dtype_policy_scope("mixed_bfloat16"):
        unet = models.tiny.build_diffusion_model(64, 64)
    long_unet = models.rewire_context_length(unet, 154)
    for outer in (
        models.interpolate_cross_attention(long_unet),
        models.interpolate_cross_attention(unet, sequence_length=154),
    ):
        wrapper = next(layer for layer in outer.layers if "outer_attention" in layer.name)
        assert wrapper.compute_dtype == "bfloat16"
        assert tuple(outer.get_layer(name="context").output.shape) == (None, 309, WIDTH)
    first = np.concatenate([arrays["first"], arrays["second"]], axis=1)
    second = first[:, ::-1].copy()
    packed = attention.pack_contexts(first, second, [1.0, 0.0, 0.3])
    output = _jit(outer)(
        {
            "latent": arrays["latent"],
            "timestep_embedding": arrays["timestep_embedding"],
            "context": packed,
        }
    )
    assert output.dtype == "bfloat16"
    output = np.asarray(output, np.float32)
    plain = _jit(long_unet)
    np.testing.assert_array_equal(output[0], _run(plain, arrays, second)[0])
    np.testing.assert_array_equal(output[1], _run(plain, arrays, first)[1])
    assert np.all(np.isfinite(output))


def test_pack_and_unpack_round_trip():
    rng = np.random.default_rng(1)
    first = rng.standard_normal((2, 5, 3))
    second = rng.standard_normal((2, 5, 3))
    packed = attention.pack_contexts(first, second, [0.25, 1])
    assert packed.shape == (2, 11, 3) and packed.dtype == np.float32
    np.testing.assert_array_equal(packed[:, 10], [[0.25] * 3, [1.0] * 3])
    got_first, got_second, alpha = attention.unpack_contexts(packed)
    np.testing.assert_array_equal(got_first, first.astype(np.float32))
    np.testing.assert_array_equal(got_second, second.astype(np.float32))
    np.testing.assert_array_equal(alpha, [0.25, 1.0])
    # A scalar α is every row's.
    np.testing.assert_array_equal(
        attention.unpack_contexts(attention.pack_contexts(first, second, 0.5))[2], [0.5, 0.5]
    )


@pytest.mark.parametrize(
    "alpha, match",
    [
        (1.5, r"`alpha`.*\[0, 1\].*1\.5"),
        (-0.1, r"`alpha`.*-0\.1"),
        (float("nan"), r"`alpha`.*nan"),
        ([0.5, float("inf")], r"`alpha`.*inf"),
        ([0.1, 0.2, 0.3], r"one value per batch row \(2\).*shape \(3,\)"),
        ([[0.5]], r"1-D"),
    ],
)
def test_bad_alpha_is_refused_with_the_value(alpha, match):
    contexts = np.zeros((2, 5, 3))
    with pytest.raises(ValueError, match=match):
        attention.pack_contexts(contexts, contexts, alpha)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"first.shape=\(2, 5, 3\), second.shape=\(2, 6, 3\)"):
        attention.pack_contexts(np.zeros((2, 5, 3)), np.zeros((2, 6, 3)), 0.5)
    with pytest.raises(ValueError, match=r"\(B, L, D\).*first.shape=\(5, 3\)"):
        attention.pack_contexts(np.zeros((5, 3)), np.zeros((5, 3)), 0.5)
    with pytest.raises(ValueError, match=r"packed.shape=\(1, 10, 3\)"):
        attention.unpack_contexts(np.zeros((1, 10, 3)))
    not_packed = np.zeros((1, 11, 3))
    not_packed[0, 10] = [0.1, 0.2, 0.3]
    with pytest.raises(ValueError, match=r"repeated over D.*row 10"):
        attention.unpack_contexts(not_packed)
    not_packed[0, 10] = 2.0
    with pytest.raises(ValueError, match=r"`alpha`.*\[2\.\]"):
        attention.unpack_contexts(not_packed)


def _small_unet(transformer_class=None, context_reader=False):
    """A 1-transformer UNet with KerasCV's inputs (D = 8, 32 channels), maybe with surprises."""
    from kerasmorph.backend import keras_module
    from kerasmorph.kerascv_internals import stable_diffusion_name

    keras = keras_module()
    latent = keras.Input((4, 4, 4), name="latent")
    timestep = keras.Input((320,), name="timestep_embedding")
    context = keras.Input((77, 8), name="context")
    x = keras.layers.Conv2D(32, 1)(latent)  # GroupNormalization's 32 groups.
    x = x + keras.layers.Dense(32)(timestep)[:, None, None]
    if transformer_class is not False:
        layer_class = transformer_class or stable_diffusion_name(
            "diffusion_model", "SpatialTransformer"
        )
        x = layer_class(2, 16)([x, context])
    if context_reader:
        pooled = keras.layers.GlobalAveragePooling1D()(context)
        x = x + keras.layers.Dense(32)(pooled)[:, None, None]
    output = keras.layers.Conv2D(4, 1)(x)
    return keras.Model([latent, timestep, context], output, name="small_unet")


def test_models_that_cannot_be_interpolated_name_themselves():
    from kerasmorph.backend import keras_module
    from kerasmorph.kerascv_internals import stable_diffusion_name

    with pytest.raises(ValueError, match=r"'small_unet' has none\. Received: \d+ layers"):
        models.interpolate_cross_attention(_small_unet(False, context_reader=True))
    reads = r"'global_average_pooling1d\w*' \(GlobalAveragePooling1D\) of model 'small_unet'"
    with pytest.raises(ValueError, match=reads):
        models.interpolate_cross_attention(_small_unet(context_reader=True))

    transformer = stable_diffusion_name("diffusion_model", "SpatialTransformer")

    class Doubled(transformer):
        def call(self, inputs):
            return 2 * super().call(inputs)

    with pytest.raises(ValueError, match=r"of model 'small_unet' differs.*call overridden"):
        models.interpolate_cross_attention(_small_unet(Doubled))
    keras = keras_module()
    with pytest.raises(ValueError, match="functional UNet"):
        models.interpolate_cross_attention(keras.Sequential([keras.layers.Dense(2)]))
    with pytest.raises(ValueError, match="no input named 'context'"):
        latent = keras.Input((4,), name="latent")
        models.interpolate_cross_attention(keras.Model(latent, keras.layers.Dense(2)(latent)))
    with pytest.raises(ValueError, match="sequence_length=0"):
        models.interpolate_cross_attention(_small_unet(), sequence_length=0)
    with pytest.raises(ValueError, match="interpolated already"):
        models.interpolate_cross_attention(models.interpolate_cross_attention(_small_unet()))


def test_the_trained_shapes_unet_endpoints_are_exact_and_its_midpoint_is_new():
    from kerasmorph.shapes import pretrained

    unet = pretrained.build_component("diffusion_model", 128, 128)
    outer = models.interpolate_cross_attention(unet)
    rng = np.random.default_rng(2)
    arrays = {
        "latent": rng.standard_normal((2, 16, 16, 4)).astype("float32"),
        "timestep_embedding": rng.standard_normal((2, 320)).astype("float32"),
    }
    first = rng.standard_normal((2, 77, 128)).astype("float32")
    second = rng.standard_normal((2, 77, 128)).astype("float32")
    output = _run(outer, arrays, attention.pack_contexts(first, second, [0.0, 1.0]))
    np.testing.assert_array_equal(output[0], _run(unet, arrays, first)[0])
    np.testing.assert_array_equal(output[1], _run(unet, arrays, second)[1])
    middle = _run(outer, arrays, attention.pack_contexts(first, second, 0.5))
    assert np.abs(middle - _run(unet, arrays, 0.5 * first + 0.5 * second)).max() > 1e-3
