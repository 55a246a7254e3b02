"""Training on the Explorer's components (layer L5): textual inversion.

- `embedding`: `train_embedding` (new token vectors from a few images; only
  they change), `TrainedEmbedding`, `learning_rate_at`;
- `data`: the concept images, their augmentation and the caption `TEMPLATES`.

Example:

```python
explorer = kerasmorph.Explorer("shapes")
result = kerasmorph.training.train_embedding(
    explorer, "concept/", "<my-shape>", initializer_token="picture",
    templates=["a {}"], num_steps=300, flip=0, out="my-shape.safetensors")
```
"""

from __future__ import annotations

from kerasmorph.training.data import TEMPLATES, augment, load_concept_images, resolve_templates
from kerasmorph.training.embedding import (
    TrainedEmbedding,
    TrainingSettings,
    learning_rate_at,
    train_embedding,
)

__all__ = [
    "TEMPLATES",
    "TrainedEmbedding",
    "TrainingSettings",
    "augment",
    "learning_rate_at",
    "load_concept_images",
    "resolve_templates",
    "train_embedding",
]
