"""The `shapes` toy model: a tiny text-to-image diffusion model trained on CPU.

- `data.py`: the procedural dataset (one coloured shape on white, with a
  caption) and the pixel measurements tests use.
- `model.py`: the four components in KerasCV's layout: text encoder, UNet, fixed
  latent encoder/decoder.
- `train.py`: the training command, `python -m kerasmorph.shapes.train --out DIR
  --minutes 65 --seed 0` (the shipped weights' two-stage recipe:
  `kerasmorph/data/shapes/README.md`).
- `evaluate.py`: prompt accuracy, `python -m kerasmorph.shapes.evaluate --seeds 32`.
- `pretrained.py`: the shipped weights and the `"shapes"` preset's component builder.

The trained weights ship in `kerasmorph/data/shapes/` and are loaded by the
`"shapes"` preset, so `kerasmorph.Explorer("shapes")` works offline.
"""
