"""Model merging by task arithmetic, over dicts of weight arrays.

Everything here is numpy over `Mapping[str, np.ndarray]` (name -> array): a
Keras model's `kerasmorph.checkpoints.component_state_dict`, or a checkpoint
file opened lazily with `kerasmorph.checkpoints.LazyTensors`, whose tensors
are read one at a time when asked for. The merges are generators underneath
(`iter_merge`), so merging two files holds about one tensor of each at a time
plus whatever the caller keeps of the result. To merge checkpoint files, or
diffusers folders into a diffusers folder, on disk, see
`kerasmorph.checkpoints.merge_checkpoints`.

| merge | formula, per tensor |
|---|---|
| `TaskVector(base, model)` | tau = model - base |
| `TaskVector.apply_to(base, c)` | base + c * tau |
| `weighted_sum(a, b, alpha)` | a * (1 - alpha) + b * alpha |
| `add_difference(a, b, c, alpha)` | a + alpha * (b - c) |
| `add_task_vectors(base, [(model, c), ...])` | base + sum c_i (model_i - base) |

Tensors whose shapes differ between the models (the depth model's 5-channel
first conv), that are missing from some model, or that are not floating point
are kept from the target model (the first argument) and listed in the
`MergeReport`; `take={"vae": other}` copies a whole component from one model.

References:
    Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023
    (mlfoundations/task_vectors).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from kerasmorph._checks import check_finite

TensorDict = Mapping[str, np.ndarray]

# Key prefixes of each component, in CompVis single files, in kerasmorph's
# canonical (diffusers) names of Keras models and in kerasmorph `.npz` folders.
COMPONENT_PREFIXES: dict[str, tuple[str, ...]] = {
    "vae": ("first_stage_model.", "vae/"),
    "unet": ("model.diffusion_model.", "unet/", "diffusion_model/"),
    "text_encoder": ("cond_stage_model.", "text_encoder/"),
}


@dataclasses.dataclass(frozen=True)
class MergeReport:
    """What a merge did with each tensor.

    Attributes:
        merged: names computed by the merge formula.
        kept: `(name, reason)` of tensors copied unchanged from the target
            because a shape differs, a model lacks them, or they are not
            floating point.
        taken: `(name, model label)` of tensors copied from another model by
            `take`.
    """

    merged: tuple[str, ...] = ()
    kept: tuple[tuple[str, str], ...] = ()
    taken: tuple[tuple[str, str], ...] = ()

    def summary(self) -> str:
        """One line per kept tensor after a count line, for logs and the CLI."""
        lines = [
            f"{len(self.merged)} tensors merged, {len(self.taken)} taken whole, "
            f"{len(self.kept)} kept from the target"
        ]
        lines.extend(f"  kept {name}: {reason}" for name, reason in self.kept)
        return "\n".join(lines)


class MergeRecorder:
    """Collects what a streaming merge does with each tensor (`iter_merge(report=...)`).

    `kerasmorph.checkpoints.merge_checkpoints` fills one while it writes;
    `freeze()` returns the `MergeReport`.
    """

    def __init__(self):
        self.merged: list[str] = []
        self.kept: list[tuple[str, str]] = []
        self.taken: list[tuple[str, str]] = []

    def freeze(self) -> MergeReport:
        """The collected names as a frozen `MergeReport`."""
        return MergeReport(tuple(self.merged), tuple(self.kept), tuple(self.taken))


def _is_float(array: np.ndarray) -> bool:
    return np.issubdtype(np.asarray(array).dtype, np.floating)


def _component_of(name: str) -> str | None:
    for component, prefixes in COMPONENT_PREFIXES.items():
        if name.startswith(prefixes):
            return component
    return None


def _check_take(take: Mapping[str, TensorDict] | None) -> dict[str, TensorDict]:
    take = dict(take or {})
    for component in take:
        if component not in COMPONENT_PREFIXES:
            valid = ", ".join(repr(c) for c in COMPONENT_PREFIXES)
            raise ValueError(
                f"`take` keys must be components: {valid}. Received: take key {component!r}"
            )
    return take


def iter_merge(
    target: TensorDict,
    terms: Sequence[tuple[float, TensorDict]],
    target_coef: float = 1.0,
    *,
    take: Mapping[str, TensorDict] | None = None,
    report: MergeRecorder | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yields `target_coef * target + sum(coef * model)` tensor by tensor.

    The building block of every merge here. Names come from `target`, in its
    order; a tensor is read from each model only when its turn comes, so lazy
    mappings stream. Arithmetic is float32; the result keeps the target's
    dtype.

    Args:
        target: the model whose names, shapes and leftovers the result keeps.
        terms: `(coefficient, model)` pairs.
        target_coef: the target's own coefficient.
        take: component (`"vae"`, `"unet"`, `"text_encoder"`) -> model whose
            tensors of that component are copied as they are.
        report: a `MergeRecorder` that collects what happened (the public merges
            return it frozen as a `MergeReport`).

    Yields:
        `(name, array)` pairs.
    """
    take = _check_take(take)
    target_coef = check_finite("target_coef", target_coef)
    terms = [(check_finite("coefficient", c), model) for c, model in terms]
    report = report if report is not None else MergeRecorder()
    for name in target:
        base = np.asarray(target[name])
        source = take.get(_component_of(name))
        if source is not None:
            if name in source and np.shape(source[name]) == base.shape:
                report.taken.append((name, _component_of(name)))
                yield name, np.asarray(source[name]).astype(base.dtype, copy=False)
                continue
            reason = (
                "missing from the `take` model"
                if name not in source
                else (f"shape {base.shape} != {np.shape(source[name])} in the `take` model")
            )
            report.kept.append((name, reason))
            yield name, base
            continue
        if not _is_float(base):
            report.kept.append((name, f"not floating point ({base.dtype})"))
            yield name, base
            continue
        reason = None
        values = []
        for index, (coefficient, model) in enumerate(terms):
            if name not in model:
                reason = f"missing from model {index + 1}"
                break
            value = np.asarray(model[name])
            if value.shape != base.shape:
                reason = f"shape {base.shape} != {value.shape} in model {index + 1}"
                break
            values.append((coefficient, value))
        if reason is not None:
            report.kept.append((name, reason))
            yield name, base
            continue
        result = base.astype(np.float32) * np.float32(target_coef)
        for coefficient, value in values:
            result += np.float32(coefficient) * value.astype(np.float32)
        report.merged.append(name)
        yield name, result.astype(base.dtype, copy=False)


def _collect(stream_args, **kwargs) -> tuple[dict[str, np.ndarray], MergeReport]:
    recorder = MergeRecorder()
    merged = dict(iter_merge(*stream_args, report=recorder, **kwargs))
    return merged, recorder.freeze()


def weighted_sum(
    a: TensorDict,
    b: TensorDict,
    alpha: float,
    *,
    take: Mapping[str, TensorDict] | None = None,
) -> tuple[dict[str, np.ndarray], MergeReport]:
    """Interpolates two models: `a * (1 - alpha) + b * alpha`.

    Args:
        a: the target model (its leftovers are kept).
        b: the other model.
        alpha: weight of `b`; 0 returns `a`, 1 returns `b`.
        take: components copied whole from another model, e.g. `{"vae": c}`.

    Returns:
        `(merged, report)`: a new dict and a `MergeReport`.

    Example:

    ```python
    merged, report = kerasmorph.merging.weighted_sum(model_a, model_b, 0.3)
    ```
    """
    alpha = check_finite("alpha", alpha)
    return _collect((a, [(alpha, b)], 1.0 - alpha), take=take)


def add_difference(
    a: TensorDict,
    b: TensorDict,
    c: TensorDict,
    alpha: float,
    *,
    take: Mapping[str, TensorDict] | None = None,
) -> tuple[dict[str, np.ndarray], MergeReport]:
    """Adds what `b` learned over `c` to `a`: `a + alpha * (b - c)`.

    Args:
        a: the target model.
        b: a fine-tune of `c`.
        c: the base `b` was trained from.
        alpha: scale of the difference.
        take: components copied whole from another model.

    Returns:
        `(merged, report)`.
    """
    alpha = check_finite("alpha", alpha)
    return _collect((a, [(alpha, b), (-alpha, c)], 1.0), take=take)


def add_task_vectors(
    base: TensorDict,
    models: Sequence[tuple[TensorDict, float]],
    *,
    take: Mapping[str, TensorDict] | None = None,
) -> tuple[dict[str, np.ndarray], MergeReport]:
    """Adds several fine-tunes' task vectors to their base, each scaled.

    `base + sum_i c_i * (model_i - base)`, computed tensor by tensor without
    materialising the task vectors.

    Args:
        base: the model every fine-tune started from (the target).
        models: `(model, coefficient)` pairs.
        take: components copied whole from another model.

    Returns:
        `(merged, report)`.

    Raises:
        ValueError: for an empty `models`.
    """
    if not models:
        raise ValueError("`models` must hold at least one (model, coefficient). Received: []")
    coefficients = [check_finite("coefficient", c) for _, c in models]
    terms = [(c, model) for (model, _), c in zip(models, coefficients)]
    terms.append((-sum(coefficients), base))
    return _collect((base, terms, 1.0), take=take)


class TaskVector:
    """A fine-tune's change to its base model, `model - base`, per tensor.

    Task vectors add, negate and scale like vectors; `apply_to` adds one to a
    base model. Only floating-point tensors with equal shapes in both models
    enter; the others are listed in `skipped` and left alone by `apply_to`.

    Args:
        base: the pretrained model (name -> array).
        model: the fine-tuned model, or `None` with `vector` given.
        vector: the differences themselves (name -> array), instead of
            `base` and `model`.

    Example:

    ```python
    style = kerasmorph.merging.TaskVector(base, fine_tune)
    merged = (style + 0.5 * other).apply_to(base, scaling_coef=0.8)
    ```

    References:
        Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023.
    """

    def __init__(
        self,
        base: TensorDict | None = None,
        model: TensorDict | None = None,
        *,
        vector: TensorDict | None = None,
    ):
        if vector is not None:
            if base is not None or model is not None:
                raise ValueError(
                    "Pass either `vector` or `base` and `model`, not both. "
                    "Received: vector and base/model"
                )
            self.vector = {name: np.asarray(value) for name, value in vector.items()}
            self.skipped: tuple[tuple[str, str], ...] = ()
            return
        if base is None or model is None:
            raise ValueError(
                "A TaskVector needs `base` and `model` (or `vector`). "
                f"Received: base={type(base).__name__}, model={type(model).__name__}"
            )
        self.vector = {}
        skipped = []
        for name in model:
            if name not in base:
                skipped.append((name, "missing from the base"))
                continue
            tuned, pretrained = np.asarray(model[name]), np.asarray(base[name])
            if tuned.shape != pretrained.shape:
                skipped.append((name, f"shape {pretrained.shape} != {tuned.shape}"))
            elif not _is_float(tuned):
                skipped.append((name, f"not floating point ({tuned.dtype})"))
            else:
                self.vector[name] = tuned.astype(np.float32) - pretrained.astype(np.float32)
        self.skipped = tuple(skipped)

    def _combine(self, other: "TaskVector", sign: float) -> "TaskVector":
        if not isinstance(other, TaskVector):
            return NotImplemented
        return TaskVector(
            vector={
                name: value + sign * other.vector[name]
                for name, value in self.vector.items()
                if name in other.vector and other.vector[name].shape == value.shape
            }
        )

    def __add__(self, other):
        """The sum, over the tensors both vectors have."""
        return self._combine(other, 1.0)

    def __radd__(self, other):
        # `sum(task_vectors)` starts from 0.
        if isinstance(other, numbers.Number) and other == 0:
            return self
        return self.__add__(other)

    def __sub__(self, other):
        return self._combine(other, -1.0)

    def __neg__(self) -> "TaskVector":
        """The negated vector ("forgetting" the task)."""
        return TaskVector(vector={name: -value for name, value in self.vector.items()})

    def __mul__(self, scale) -> "TaskVector":
        scale = check_finite("scale", scale)
        return TaskVector(vector={name: scale * value for name, value in self.vector.items()})

    __rmul__ = __mul__

    def __len__(self) -> int:
        return len(self.vector)

    def apply_to(self, base: TensorDict, scaling_coef: float = 1.0) -> dict[str, np.ndarray]:
        """Returns `base + scaling_coef * vector`; other tensors are copied.

        Args:
            base: the model to add the vector to (name -> array).
            scaling_coef: the vector's scale.

        Returns:
            A new dict with every name of `base`, in the base's dtypes.
        """
        merged, _ = _collect((base, [(scaling_coef, self.vector)], 1.0))
        return merged


# ---------------------------------------------------------------- similarity


@dataclasses.dataclass(frozen=True)
class LayerSimilarity:
    """The cosine similarity of one tensor in two models.

    Attributes:
        name: the tensor's name.
        shape: its shape.
        cosine: cosine similarity in [-1, 1]; NaN when either tensor is zero.
        norm_a: L2 norm in the first model.
        norm_b: L2 norm in the second model.
    """

    name: str
    shape: tuple[int, ...]
    cosine: float
    norm_a: float
    norm_b: float


def cosine_similarities(
    a: TensorDict,
    b: TensorDict,
    *,
    on_tensor: Callable[[], None] | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> list[LayerSimilarity]:
    """Per-tensor cosine similarity of two models or task vectors.

    Only floating-point tensors present in both with equal shapes are
    compared (as flat float64 vectors); read lazily, one pair at a time.

    Args:
        a: a model or `TaskVector.vector` (name -> array).
        b: another.
        on_tensor: called after each of `a`'s tensors, compared or not
            (`len(a)` calls: a progress bar, `kerasmorph.progress`).
        skipped: if given, gets `(name, reason)` for each of `a`'s tensors
            that could not be compared (the depth model's 5-channel first
            convolution against a 4-channel model's).

    Returns:
        A list of `LayerSimilarity`, in `a`'s order.
    """
    a = a.vector if isinstance(a, TaskVector) else a
    b = b.vector if isinstance(b, TaskVector) else b
    rows = []
    for name in a:
        row = _similarity(a, b, name)
        if isinstance(row, LayerSimilarity):
            rows.append(row)
        elif skipped is not None:
            skipped.append((name, row))
        if on_tensor is not None:
            on_tensor()
    return rows


def _similarity(a: TensorDict, b: TensorDict, name: str) -> LayerSimilarity | str:
    """The `LayerSimilarity` of tensor `name`, or why it cannot be compared."""
    if name not in b:
        return "missing from the second model"
    try:
        first, second = np.asarray(a[name]), np.asarray(b[name])
    except KeyError:  # A `TaskVectorView` entry whose models disagree.
        return "its shape or dtype differs between a model and the base"
    if first.shape != second.shape:
        return f"shape {first.shape} != {second.shape}"
    if not (_is_float(first) and _is_float(second)):
        return f"not floating point ({first.dtype}, {second.dtype})"
    x = first.astype(np.float64).ravel()
    y = second.astype(np.float64).ravel()
    norm_x, norm_y = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    cosine = float(x @ y / (norm_x * norm_y)) if norm_x > 0 and norm_y > 0 else float("nan")
    return LayerSimilarity(name, tuple(first.shape), cosine, norm_x, norm_y)


def similarity_csv(rows: Sequence[LayerSimilarity]) -> str:
    """The similarities as CSV text: name, shape, cosine, norm_a, norm_b."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "shape", "cosine", "norm_a", "norm_b"])
    for row in rows:
        writer.writerow(
            [
                row.name,
                "x".join(map(str, row.shape)),
                f"{row.cosine:.8f}",
                f"{row.norm_a:.6g}",
                f"{row.norm_b:.6g}",
            ]
        )
    return buffer.getvalue()


class TaskVectorView(Mapping):
    """`model - base` computed lazily, tensor by tensor, as a `Mapping`.

    For comparing the task vectors of two checkpoint files (`cosine_similarities`)
    without holding a whole vector: only floating-point tensors present in
    both with equal shapes are included.

    Args:
        base: the pretrained model (name -> array, possibly lazy).
        model: the fine-tune.
    """

    def __init__(self, base: TensorDict, model: TensorDict):
        self.base, self.model = base, model
        self._names = [name for name in model if name in base]

    def __getitem__(self, name: str) -> np.ndarray:
        tuned, pretrained = np.asarray(self.model[name]), np.asarray(self.base[name])
        if tuned.shape != pretrained.shape or not (_is_float(tuned) and _is_float(pretrained)):
            raise KeyError(name)
        return tuned.astype(np.float32) - pretrained.astype(np.float32)

    def __contains__(self, name) -> bool:
        return name in self.model and name in self.base

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)
