"""Name plans: which CompVis/diffusers tensor feeds each KerasCV variable.

Every Keras weight is mapped *by name*: the KerasCV layers are walked in their
forward order, each block is paired with its CompVis and diffusers name (the
block tables `unet_blocks`, `decoder_blocks`, `image_encoder_blocks`), and
each variable gets a `TensorRef` saying which tensor feeds it and how:

| layout | PyTorch | Keras |
|---|---|---|
| `"conv"` | (out, in, kh, kw) | transpose(2, 3, 1, 0) -> (kh, kw, in, out) |
| `"linear"` | (out, in) | transpose -> (in, out) |
| `"copy"` | norms, biases, embeddings | as they are |

Special cases: SD2's OpenCLIP `attn.in_proj_weight` (3D, D) is split by rows
into q, k, v; the 24th OpenCLIP layer is dropped (KerasCV's `TextEncoderV2`
stops at the penultimate layer, then applies the final LayerNorm); diffusers'
VAE attention Linear (out, in) feeds KerasCV's 1x1 convs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from kerasmorph.backend import keras_module
from kerasmorph.checkpoints.detect import (
    SD1_TEXT_PREFIXES,
    SD2_TEXT_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
    model_family,
)
from kerasmorph.constants import COMPONENTS
from kerasmorph.models import depth
from kerasmorph.weights import Family

Layout = Literal["conv", "linear", "copy"]
# transformers 4 saves `text_model.*`, transformers 5 drops the prefix.
_HF_TEXT_PREFIXES = ("text_encoder/text_model.", "text_encoder/")
_KERAS_CV_HINT = "Is keras_cv 0.9 installed?"


@dataclasses.dataclass(frozen=True)
class TensorRef:
    """Where one Keras weight comes from.

    Attributes:
        compvis: candidate keys in a CompVis/A1111 single file (first found wins).
        diffusers: candidate keys in a diffusers folder, with the subfolder
            (`"unet/conv_in.weight"`); the first is also the weight's canonical
            name in `component_state_dict`.
        layout: `"conv"`, `"linear"` or `"copy"` (see the module docstring).
        rows: `(start, stop)` slice of the first axis of the CompVis tensor
            (OpenCLIP's fused q/k/v); diffusers files store them apart.
        linear_as_conv: accept a 2-D Linear weight for a 1x1 conv (VAE attention
            in diffusers files).
    """

    compvis: tuple[str, ...]
    diffusers: tuple[str, ...]
    layout: Layout
    rows: tuple[int, int] | None = None
    linear_as_conv: bool = False

    @property
    def name(self) -> str:
        """The canonical (diffusers) name of the weight."""
        return self.diffusers[0]


def _as_tuple(value) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _ref(compvis, diffusers, layout: Layout, **kwargs) -> TensorRef:
    return TensorRef(_as_tuple(compvis), _as_tuple(diffusers), layout, **kwargs)


def _names(prefixes: Sequence[str], name: str) -> tuple[str, ...]:
    return tuple(prefix + name for prefix in prefixes)


def _join(prefixes, name: str) -> tuple[str, ...]:
    return tuple(f"{prefix}.{name}" for prefix in _as_tuple(prefixes))


def _dense_refs(layer, compvis: Sequence[str], diffusers: Sequence[str], **kwargs):
    """(variable, ref) of a Dense layer from PyTorch `.weight`/`.bias`."""
    yield (
        layer.kernel,
        _ref(_names(compvis, ".weight"), _names(diffusers, ".weight"), "linear", **kwargs),
    )
    if layer.bias is not None:
        yield (
            layer.bias,
            _ref(_names(compvis, ".bias"), _names(diffusers, ".bias"), "copy", **kwargs),
        )


def _conv_refs(layer, compvis: Sequence[str], diffusers: Sequence[str], **kwargs):
    """(variable, ref) of a KerasCV PaddedConv2D (or a Conv2D)."""
    conv = getattr(layer, "conv2d", layer)
    yield (
        conv.kernel,
        _ref(_names(compvis, ".weight"), _names(diffusers, ".weight"), "conv", **kwargs),
    )
    yield conv.bias, _ref(_names(compvis, ".bias"), _names(diffusers, ".bias"), "copy")


def _norm_refs(layer, compvis: Sequence[str], diffusers: Sequence[str]):
    """(variable, ref) of a Group/LayerNormalization: weight -> gamma, bias -> beta."""
    yield layer.gamma, _ref(_names(compvis, ".weight"), _names(diffusers, ".weight"), "copy")
    yield layer.beta, _ref(_names(compvis, ".bias"), _names(diffusers, ".bias"), "copy")


def _expect(layer, cls, component: str) -> None:
    if not isinstance(layer, cls):
        raise RuntimeError(
            f"Unexpected layer {layer.name} ({type(layer).__name__}) in KerasCV's "
            f"{component}; expected {cls.__name__}. {_KERAS_CV_HINT}"
        )


# ---------------------------------------------------------------- text encoder


def _clip_embedding_refs(embedding, family: Family):
    """(variable, ref) of the token and position embeddings."""
    if family == "sd1":
        token = _names(SD1_TEXT_PREFIXES, "embeddings.token_embedding.weight")
        position = _names(SD1_TEXT_PREFIXES, "embeddings.position_embedding.weight")
    else:
        token = SD2_TEXT_PREFIX + "token_embedding.weight"
        position = SD2_TEXT_PREFIX + "positional_embedding"
    hf = _HF_TEXT_PREFIXES
    yield (
        embedding.token_embedding.embeddings,
        _ref(token, _names(hf, "embeddings.token_embedding.weight"), "copy"),
    )
    yield (
        embedding.position_embedding.embeddings,
        _ref(position, _names(hf, "embeddings.position_embedding.weight"), "copy"),
    )


def _clip_layer_refs(block, index: int):
    """(variable, ref) of one SD 1.x CLIP encoder layer (q/k/v stored apart)."""
    layer = _names(_HF_TEXT_PREFIXES, f"encoder.layers.{index}")
    cv = _names(SD1_TEXT_PREFIXES, f"encoder.layers.{index}")
    yield from _norm_refs(block.layer_norm1, _join(cv, "layer_norm1"), _join(layer, "layer_norm1"))
    for part in ("q_proj", "k_proj", "v_proj", "out_proj"):
        yield from _dense_refs(
            getattr(block.clip_attn, part),
            _join(cv, f"self_attn.{part}"),
            _join(layer, f"self_attn.{part}"),
        )
    yield from _norm_refs(block.layer_norm2, _join(cv, "layer_norm2"), _join(layer, "layer_norm2"))
    yield from _dense_refs(block.fc1, _join(cv, "mlp.fc1"), _join(layer, "mlp.fc1"))
    yield from _dense_refs(block.fc2, _join(cv, "mlp.fc2"), _join(layer, "mlp.fc2"))


def _open_clip_layer_refs(block, index: int, width: int):
    """(variable, ref) of one SD 2.x OpenCLIP layer: q/k/v are rows of `in_proj`."""
    layer = _names(_HF_TEXT_PREFIXES, f"encoder.layers.{index}")
    cv = f"{SD2_TEXT_PREFIX}transformer.resblocks.{index}"
    attn = block.clip_attn
    yield from _norm_refs(block.layer_norm1, [f"{cv}.ln_1"], _join(layer, "layer_norm1"))
    for row, part in enumerate(("q_proj", "k_proj", "v_proj")):
        rows = (row * width, (row + 1) * width)
        dense = getattr(attn, part)
        for variable, name, layout in (
            (dense.kernel, "weight", "linear"),
            (dense.bias, "bias", "copy"),
        ):
            yield (
                variable,
                _ref(
                    f"{cv}.attn.in_proj_{name}",
                    _join(layer, f"self_attn.{part}.{name}"),
                    layout,
                    rows=rows,
                ),
            )
    yield from _dense_refs(
        attn.out_proj, [f"{cv}.attn.out_proj"], _join(layer, "self_attn.out_proj")
    )
    yield from _norm_refs(block.layer_norm2, [f"{cv}.ln_2"], _join(layer, "layer_norm2"))
    yield from _dense_refs(block.fc1, [f"{cv}.mlp.c_fc"], _join(layer, "mlp.fc1"))
    yield from _dense_refs(block.fc2, [f"{cv}.mlp.c_proj"], _join(layer, "mlp.fc2"))


def _text_encoder_plan(model, family: Family):
    """(variable, ref) of KerasCV's `TextEncoder`/`TextEncoderV2`."""
    from kerasmorph.kerascv_internals import stable_diffusion_modules

    (kcv,) = stable_diffusion_modules("text_encoder")

    layers = [layer for layer in model.layers if layer.weights]
    embedding, *blocks, final_norm = layers
    _expect(embedding, kcv.CLIPEmbedding, "text_encoder")
    yield from _clip_embedding_refs(embedding, family)
    width = int(embedding.token_embedding.embeddings.shape[-1])
    for index, block in enumerate(blocks):
        _expect(block, kcv.CLIPEncoderLayer, "text_encoder")
        if family == "sd1":
            yield from _clip_layer_refs(block, index)
        else:
            yield from _open_clip_layer_refs(block, index, width)
    final_cv = (
        _names(SD1_TEXT_PREFIXES, "final_layer_norm")
        if family == "sd1"
        else [SD2_TEXT_PREFIX + "ln_final"]
    )
    yield from _norm_refs(final_norm, final_cv, _names(_HF_TEXT_PREFIXES, "final_layer_norm"))


# ------------------------------------------------------------------ block tables


def unet_blocks() -> list[tuple[str, str, str]]:
    """The UNet's blocks in forward order: (kind, CompVis name, diffusers name).

    Kinds: `"conv"`, `"downsample"`, `"upsample"`, `"resnet"`, `"transformer"`,
    `"norm"`. CompVis numbers `input_blocks` 0-11 (every third a
    downsampler) and `output_blocks` 0-11; diffusers groups them by level.
    """
    blocks = [("conv", "input_blocks.0.0", "conv_in")]
    for level in range(4):
        for index in range(2):
            number = 3 * level + index + 1
            down = f"down_blocks.{level}"
            blocks.append(("resnet", f"input_blocks.{number}.0", f"{down}.resnets.{index}"))
            if level < 3:
                blocks.append(
                    ("transformer", f"input_blocks.{number}.1", f"{down}.attentions.{index}")
                )
        if level < 3:
            blocks.append(
                (
                    "downsample",
                    f"input_blocks.{3 * level + 3}.0.op",
                    f"down_blocks.{level}.downsamplers.0.conv",
                )
            )
    blocks += [
        ("resnet", "middle_block.0", "mid_block.resnets.0"),
        ("transformer", "middle_block.1", "mid_block.attentions.0"),
        ("resnet", "middle_block.2", "mid_block.resnets.1"),
    ]
    for level in range(4):
        for index in range(3):
            number = 3 * level + index
            up = f"up_blocks.{level}"
            blocks.append(("resnet", f"output_blocks.{number}.0", f"{up}.resnets.{index}"))
            if level > 0:
                blocks.append(
                    ("transformer", f"output_blocks.{number}.1", f"{up}.attentions.{index}")
                )
        if level < 3:
            slot = 2 if level > 0 else 1
            blocks.append(
                (
                    "upsample",
                    f"output_blocks.{3 * level + 2}.{slot}.conv",
                    f"up_blocks.{level}.upsamplers.0.conv",
                )
            )
    blocks += [("norm", "out.0", "conv_norm_out"), ("conv", "out.2", "conv_out")]
    return blocks


def decoder_blocks() -> list[tuple[str, str, str]]:
    """The VAE decoder's blocks in KerasCV order: (kind, CompVis name, diffusers name).

    diffusers numbers `decoder.up_blocks.i` in reverse of CompVis `decoder.up.{3-i}`.
    """
    blocks = [
        ("conv", "post_quant_conv", "post_quant_conv"),
        ("conv", "decoder.conv_in", "decoder.conv_in"),
        ("resnet", "decoder.mid.block_1", "decoder.mid_block.resnets.0"),
        ("attention", "decoder.mid.attn_1", "decoder.mid_block.attentions.0"),
        ("resnet", "decoder.mid.block_2", "decoder.mid_block.resnets.1"),
    ]
    for level in range(4):
        for index in range(3):
            blocks.append(
                (
                    "resnet",
                    f"decoder.up.{3 - level}.block.{index}",
                    f"decoder.up_blocks.{level}.resnets.{index}",
                )
            )
        if level < 3:
            blocks.append(
                (
                    "conv",
                    f"decoder.up.{3 - level}.upsample.conv",
                    f"decoder.up_blocks.{level}.upsamplers.0.conv",
                )
            )
    blocks += [
        ("norm", "decoder.norm_out", "decoder.conv_norm_out"),
        ("conv", "decoder.conv_out", "decoder.conv_out"),
    ]
    return blocks


def image_encoder_blocks() -> list[tuple[str, str, str]]:
    """The VAE encoder's blocks in KerasCV order: (kind, CompVis name, diffusers name)."""
    blocks = [("conv", "encoder.conv_in", "encoder.conv_in")]
    for level in range(4):
        for index in range(2):
            blocks.append(
                (
                    "resnet",
                    f"encoder.down.{level}.block.{index}",
                    f"encoder.down_blocks.{level}.resnets.{index}",
                )
            )
        if level < 3:
            blocks.append(
                (
                    "conv",
                    f"encoder.down.{level}.downsample.conv",
                    f"encoder.down_blocks.{level}.downsamplers.0.conv",
                )
            )
    blocks += [
        ("resnet", "encoder.mid.block_1", "encoder.mid_block.resnets.0"),
        ("attention", "encoder.mid.attn_1", "encoder.mid_block.attentions.0"),
        ("resnet", "encoder.mid.block_2", "encoder.mid_block.resnets.1"),
        ("norm", "encoder.norm_out", "encoder.conv_norm_out"),
        ("conv", "encoder.conv_out", "encoder.conv_out"),
        ("conv", "quant_conv", "quant_conv"),
    ]
    return blocks


def _block_chain_refs(
    chain: Sequence[Any],
    blocks: Sequence[tuple[str, str, str]],
    classes: dict[str, type],
    component: str,
    block_refs: Callable[[Any, str, str, str], Iterable],
    label: str,
):
    """(variable, ref) of the layers of `chain`, paired in order with a block table."""
    if len(chain) != len(blocks):
        raise RuntimeError(
            f"KerasCV's {label} has {len(chain)} blocks with weights; "
            f"kerasmorph's CompVis map has {len(blocks)}. {_KERAS_CV_HINT}"
        )
    for layer, (kind, compvis, diffusers) in zip(chain, blocks):
        _expect(layer, classes[kind], component)
        yield from block_refs(layer, kind, compvis, diffusers)


# -------------------------------------------------------------------------- UNet


def _resnet_refs(layer, c: str, d: str):
    """(variable, ref) of a KerasCV UNet `ResBlock`."""
    yield from _norm_refs(layer.entry_flow[0], [c + ".in_layers.0"], [d + ".norm1"])
    yield from _conv_refs(layer.entry_flow[2], [c + ".in_layers.2"], [d + ".conv1"])
    yield from _dense_refs(layer.embedding_flow[1], [c + ".emb_layers.1"], [d + ".time_emb_proj"])
    yield from _norm_refs(layer.exit_flow[0], [c + ".out_layers.0"], [d + ".norm2"])
    yield from _conv_refs(layer.exit_flow[2], [c + ".out_layers.3"], [d + ".conv2"])
    if hasattr(layer.residual_projection, "conv2d"):  # A PaddedConv2D, else the identity.
        yield from _conv_refs(
            layer.residual_projection, [c + ".skip_connection"], [d + ".conv_shortcut"]
        )


def _spatial_transformer_refs(layer, c: str, d: str):
    """(variable, ref) of a KerasCV `SpatialTransformer` (SD1: conv projections, SD2: Dense)."""
    dense = keras_module().layers.Dense
    yield from _norm_refs(layer.norm, [c + ".norm"], [d + ".norm"])
    project = _dense_refs if isinstance(layer.proj1, dense) else _conv_refs
    yield from project(layer.proj1, [c + ".proj_in"], [d + ".proj_in"])
    block = layer.transformer_block
    c_block, d_block = c + ".transformer_blocks.0", d + ".transformer_blocks.0"
    for index, attention in ((1, block.attn1), (2, block.attn2)):
        yield from _norm_refs(
            getattr(block, f"norm{index}"), [f"{c_block}.norm{index}"], [f"{d_block}.norm{index}"]
        )
        for part, name in (
            ("to_q", "to_q"),
            ("to_k", "to_k"),
            ("to_v", "to_v"),
            ("out_proj", "to_out.0"),
        ):
            yield from _dense_refs(
                getattr(attention, part),
                [f"{c_block}.attn{index}.{name}"],
                [f"{d_block}.attn{index}.{name}"],
            )
    yield from _norm_refs(block.norm3, [c_block + ".norm3"], [d_block + ".norm3"])
    yield from _dense_refs(
        block.geglu.dense, [c_block + ".ff.net.0.proj"], [d_block + ".ff.net.0.proj"]
    )
    yield from _dense_refs(block.dense, [c_block + ".ff.net.2"], [d_block + ".ff.net.2"])
    project = _dense_refs if isinstance(layer.proj2, dense) else _conv_refs
    yield from project(layer.proj2, [c + ".proj_out"], [d + ".proj_out"])


def _unet_block_refs(layer, kind: str, compvis: str, diffusers: str):
    c, d = UNET_PREFIX + compvis, "unet/" + diffusers
    if kind in ("conv", "downsample"):
        yield from _conv_refs(layer, [c], [d])
    elif kind == "upsample":
        yield from _conv_refs(layer.conv, [c], [d])
    elif kind == "norm":
        yield from _norm_refs(layer, [c], [d])
    elif kind == "resnet":
        yield from _resnet_refs(layer, c, d)
    else:
        yield from _spatial_transformer_refs(layer, c, d)


def _unet_plan(model, family: Family):
    """(variable, ref) of KerasCV's `DiffusionModel`/`DiffusionModelV2`."""
    keras = keras_module()
    from kerasmorph.kerascv_internals import stable_diffusion_modules

    kcv, padded_conv2d = stable_diffusion_modules("diffusion_model", "padded_conv2d")
    PaddedConv2D = padded_conv2d.PaddedConv2D

    chain = []
    for layer in model.layers:
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.Dense):
            # The two time-embedding Dense layers sit off the main chain, so
            # their place in `model.layers` is not fixed: tell them by width.
            first = int(layer.kernel.shape[0]) == 320
            compvis, diffusers = (
                ("time_embed.0", "time_embedding.linear_1")
                if first
                else ("time_embed.2", "time_embedding.linear_2")
            )
            yield from _dense_refs(layer, [UNET_PREFIX + compvis], ["unet/" + diffusers])
        else:
            chain.append(layer)
    classes = {
        "conv": PaddedConv2D,
        "downsample": PaddedConv2D,
        "upsample": kcv.Upsample,
        "resnet": kcv.ResBlock,
        "transformer": kcv.SpatialTransformer,
        "norm": keras.layers.GroupNormalization,
    }
    yield from _block_chain_refs(
        chain, unet_blocks(), classes, "diffusion_model", _unet_block_refs, "DiffusionModel"
    )


# --------------------------------------------------------------------------- VAE


def _vae_block_refs(layer, kind: str, compvis: str, diffusers: str):
    c, d = VAE_PREFIX + compvis, "vae/" + diffusers
    if kind == "conv":
        yield from _conv_refs(layer, [c], [d])
    elif kind == "norm":
        yield from _norm_refs(layer, [c], [d])
    elif kind == "resnet":
        yield from _norm_refs(layer.norm1, [c + ".norm1"], [d + ".norm1"])
        yield from _conv_refs(layer.conv1, [c + ".conv1"], [d + ".conv1"])
        yield from _norm_refs(layer.norm2, [c + ".norm2"], [d + ".norm2"])
        yield from _conv_refs(layer.conv2, [c + ".conv2"], [d + ".conv2"])
        if hasattr(layer.residual_projection, "conv2d"):  # Else the identity.
            yield from _conv_refs(
                layer.residual_projection, [c + ".nin_shortcut"], [d + ".conv_shortcut"]
            )
    else:  # attention: CompVis 1x1 convs; diffusers Linear under new or old names.
        yield from _norm_refs(layer.norm, [c + ".norm"], [d + ".group_norm"])
        for keras_name, compvis_name, new, old in (
            ("q", "q", "to_q", "query"),
            ("k", "k", "to_k", "key"),
            ("v", "v", "to_v", "value"),
            ("proj_out", "proj_out", "to_out.0", "proj_attn"),
        ):
            yield from _conv_refs(
                getattr(layer, keras_name),
                [f"{c}.{compvis_name}"],
                [f"{d}.{new}", f"{d}.{old}"],
                linear_as_conv=True,
            )


def _vae_plan(model, component: str):
    keras = keras_module()
    from kerasmorph.kerascv_internals import stable_diffusion_modules

    attention_block, padded_conv2d, resnet_block = stable_diffusion_modules(
        "attention_block", "padded_conv2d", "resnet_block"
    )
    AttentionBlock = attention_block.AttentionBlock
    PaddedConv2D = padded_conv2d.PaddedConv2D
    ResnetBlock = resnet_block.ResnetBlock

    blocks = decoder_blocks() if component == "decoder" else image_encoder_blocks()
    chain = [layer for layer in model.layers if layer.weights]
    classes = {
        "conv": PaddedConv2D,
        "resnet": ResnetBlock,
        "attention": AttentionBlock,
        "norm": keras.layers.GroupNormalization,
    }
    yield from _block_chain_refs(chain, blocks, classes, component, _vae_block_refs, component)


# ------------------------------------------------------------------------ plans


def check_component(component: str) -> None:
    """Raises unless `component` is one of `COMPONENTS`."""
    if component not in COMPONENTS:
        valid = ", ".join(repr(c) for c in COMPONENTS)
        raise ValueError(f"`component` must be one of {valid}. Received: component={component!r}")


def weight_plan(model, component: str, family: Family | None = None) -> list[tuple[Any, TensorRef]]:
    """Pairs every weight of a KerasCV component with the tensor that feeds it.

    Args:
        model: a built KerasCV `TextEncoder(V2)`, `DiffusionModel(V2)`,
            `Decoder` or `ImageEncoder`. A depth UNet (`sd2-depth`: a
            5-channel first conv, the same names) may come wrapped by
            `kerasmorph.models.depth.with_depth_input`: its UNet is mapped.
        component: one of `COMPONENTS`.
        family: `"sd1"`, `"sd2"` or `"sd2-depth"`; default: read from the model.

    Returns:
        A list of `(variable, TensorRef)` covering each variable of `model`
        exactly once (a wrapped depth UNet: of its UNet, not the stored
        depth map), in `model.weights` order.

    Raises:
        ValueError: for an unknown component.
        RuntimeError: when the model's layout is not KerasCV 0.9's.

    Example:

    ```python
    for variable, ref in kerasmorph.checkpoints.weight_plan(decoder, "decoder"):
        print(variable.path, ref.compvis[0], ref.layout)
    ```
    """
    check_component(component)
    if component == "diffusion_model":
        model = depth.inner_unet(model)
    family = family or model_family(model, component)
    if component == "text_encoder":
        pairs = list(_text_encoder_plan(model, family))
    elif component == "diffusion_model":
        pairs = list(_unet_plan(model, family))
    else:
        pairs = list(_vae_plan(model, component))
    by_id = {id(variable): (variable, ref) for variable, ref in pairs}
    if (
        len(by_id) != len(pairs)
        or len(pairs) != len(model.weights)
        or any(id(variable) not in by_id for variable in model.weights)
    ):
        raise RuntimeError(
            f"kerasmorph's map covers {len(by_id)} of the {len(model.weights)} "
            f"weights of KerasCV's {component}. {_KERAS_CV_HINT}"
        )
    return [by_id[id(variable)] for variable in model.weights]
