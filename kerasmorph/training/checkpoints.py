"""Textual-inversion checkpoints: `DIR/state.npz` and the embedding of each checkpointed step.

The state holds the vectors, the optimizer's variables, the loss and
learning-rate curves, the seconds spent and the settings (as JSON): a run
resumes only with the same settings, and every file is written atomically, so
a killed run keeps its last checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from kerasmorph.atomic import atomic_path
from kerasmorph.errors import InputError
from kerasmorph.models import textual_inversion as ti

STATE_FILE = "state.npz"


class Checkpoints:
    """`directory/state.npz` (vectors, optimizer, curves) and `learned_embeds-steps-N.*`.

    Args:
        directory: the folder, or None for no checkpoints.
        settings: the run's `TrainingSettings` (a state of other settings is refused).
        out_suffix: the embedding files' format (`.safetensors`, `.pt`, `.bin`).
    """

    def __init__(self, directory: Path | None, settings, out_suffix: str):
        self.directory = directory
        self.settings = settings
        self.suffix = out_suffix

    @property
    def state_path(self) -> Path | None:
        return None if self.directory is None else self.directory / STATE_FILE

    def load(self) -> dict[str, Any] | None:
        """The saved state, if one exists (and was written with the same settings)."""
        path = self.state_path
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as saved:
                state = {key: saved[key] for key in saved.files}
        except (OSError, ValueError) as error:
            raise InputError(
                f"The training checkpoint {path} cannot be read ({error}); delete it to start over."
            ) from None
        saved_settings = json.loads(str(state["settings"]))
        if saved_settings != self.settings.to_json():
            changed = sorted(
                key
                for key in saved_settings.keys() | self.settings.to_json().keys()
                if saved_settings.get(key) != self.settings.to_json().get(key)
            )
            raise InputError(
                f"The checkpoint in {self.directory} was trained with other settings "
                f"({', '.join(changed)}); resume with the same settings, or restart "
                "(--restart, resume=False) or use another checkpoint folder."
            )
        return state

    def save(self, step: int, vectors: np.ndarray, optimizer, losses, rates, seconds) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        embedding = ti.TextualInversion(self.settings.token, vectors)
        ti.save_textual_inversion(
            self.directory / f"learned_embeds-steps-{step:06d}{self.suffix}", embedding, step=step
        )
        optimizer_state = {f"optimizer_{i}": v.numpy() for i, v in enumerate(optimizer.variables)}
        with atomic_path(self.state_path) as temporary:
            np.savez(
                temporary,
                step=np.int64(step),
                vectors=vectors,
                losses=np.asarray(losses, dtype=np.float64),
                learning_rates=np.asarray(rates, dtype=np.float64),
                seconds=np.float64(seconds),
                settings=np.asarray(json.dumps(self.settings.to_json())),
                **optimizer_state,
            )
