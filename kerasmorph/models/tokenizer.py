"""The CLIP tokenizer: KerasCV's `SimpleTokenizer` on the BPE merges shipped inside kerasmorph."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from kerasmorph.backend import keras_module


def bpe_vocabulary_path() -> Path:
    """Returns the path of the CLIP BPE merges shipped inside kerasmorph."""
    return Path(
        str(resources.files("kerasmorph") / "data" / "clip" / "bpe_simple_vocab_16e6.txt.gz")
    )


def build_tokenizer():
    """Builds KerasCV's CLIP `SimpleTokenizer` on the bundled vocabulary."""
    keras_module()
    from kerasmorph.kerascv_internals import stable_diffusion_name

    SimpleTokenizer = stable_diffusion_name("clip_tokenizer", "SimpleTokenizer")

    return SimpleTokenizer(bpe_path=str(bpe_vocabulary_path()))
