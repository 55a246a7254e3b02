"""What decides a render's frames: `RenderSpec`, the manifest that describes it.

A render directory's `manifest.json` is a `RenderSpec`: every parameter that
decides the frames, each field validated on construction (`_FIELD_CHECKS`).
What decides a frame, and so is compared (`differing_fields`): the walk
(kind, prompts, seeds, frames, schedule, options), the model and a
full-content hash of its weight files (`weights_fingerprint`), the
textual-inversion embeddings (content hashes and tokens), the image size,
the resolved precision plan (dtype policies, the step's and the decoder's
XLA), sampling and scheduler settings, and the batch size. Recorded for
information only (`INFORMATIONAL_FIELDS`): the kerasmorph version (a new
version resumes an old directory) and the precision *request* (what
`kerasmorph render DIR` passes back to rebuild the same plan).

Manifests are read as strict JSON (`load_spec`); one that is not valid is
refused naming the file and the reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import kerasmorph
from kerasmorph import weights
from kerasmorph._checks import check_count, check_finite
from kerasmorph.errors import InputError, RenderDirectoryError

MANIFEST = "manifest.json"
# Recorded for information only: they do not decide the frames.
INFORMATIONAL_FIELDS = ("version", "precision_request")
# `weights_fingerprint` of kerasmorph 0.1 manifests: names, sizes and 1 MiB at each end.
_LEGACY_WEIGHTS = re.compile(r"^[^:]+:[0-9a-f]{16}$")


@dataclasses.dataclass(frozen=True)
class RenderSpec:
    """Everything that decides a render's frames; round-trips through JSON.

    Every field is validated on construction (so a manifest with a wrong
    type is refused naming the field); lists become tuples.

    Attributes:
        kind: the walk, one of `WALK_BUILDERS` ("interpolate", "grid", …).
        prompts: the prompts, in order.
        seeds: noise seeds (one for most walks, 2+ for "morph-seeds").
        num_frames: frames per walk (per side for "grid").
        schedule: schedule name.
        options: walk-specific settings (e.g. {"step_size": 0.005}).
        model: preset name.
        weights: `weights_fingerprint` of the weight files (or the random seed).
        img_height, img_width: image size.
        precision: the resolved dtype policies ("float32", or
            "auto:TEXT/UNET/VAE" for the automatic plan).
        jit_compile: whether the denoising step is compiled with XLA.
        num_steps, unconditional_guidance_scale, negative_prompt: sampling.
        batch_size: UNet batch (frames are byte-identical only for one batch).
        version: kerasmorph version that first rendered it (information only).
        scheduler: the sampling algorithm's name (`kerasmorph.schedulers`).
        scheduler_config: its configuration (`Scheduler.config`); `{}` for
            the scheduler's defaults with the model's prediction type.
        decoder_jit_compile: whether the VAE decoder is compiled with XLA;
            None in manifests written before it was recorded (not compared).
        embeddings: the textual-inversion files loaded, in order, each
            `{"path": absolute path, "sha256": content hash, "tokens": [...]}`;
            the hash and tokens decide the frames, the path is where
            `kerasmorph render` looks for the file.
        precision_request: what was asked for, `{"precision": "auto",
            "jit_compile": None}` (the `--precision` and `--jit` flags), so a
            resumed render rebuilds the same plan (information only).
    """

    kind: str
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    num_frames: int
    schedule: str
    options: dict[str, Any]
    model: str
    weights: str
    img_height: int
    img_width: int
    precision: str
    jit_compile: bool
    num_steps: int
    unconditional_guidance_scale: float
    negative_prompt: str | None
    batch_size: int
    version: str = kerasmorph.__version__
    # Fields added later have defaults, so older manifests still load (as DDIM renders).
    scheduler: str = "ddim"
    scheduler_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    decoder_jit_compile: bool | None = None
    embeddings: tuple[dict[str, Any], ...] = ()
    precision_request: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for name, check in _FIELD_CHECKS.items():
            value = check(name, getattr(self, name))
            object.__setattr__(self, name, value)

    def to_json(self) -> dict[str, Any]:
        """A strict-JSON-ready dict (tuples become lists; no NaN or Infinity)."""
        return json.loads(json.dumps(dataclasses.asdict(self), allow_nan=False))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RenderSpec:
        """Rebuilds a spec from `to_json` output.

        Raises:
            ValueError: for unknown or missing fields, or a field of the wrong
                type or range (the message names it).
        """
        if not isinstance(data, dict):
            raise InputError(
                "A render manifest must be a JSON object of RenderSpec fields. "
                f"Received: {type(data).__name__}"
            )
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(names - set(data) - set(_optional_fields()))
        if unknown or missing:
            raise InputError(
                f"Not a kerasmorph render manifest: unknown fields {unknown}, missing "
                f"fields {missing}. Received: {sorted(data)}"
            )
        return cls(**data)


# ----------------------------------------------------------------------- validation


def _received(name: str, value: Any, expected: str) -> InputError:
    return InputError(f"`{name}` must be {expected}. Received: {name}={value!r}")


def _string(name, value):
    if not isinstance(value, str):
        raise _received(name, value, "a string")
    return value


def _optional_string(name, value):
    return None if value is None else _string(name, value)


def _boolean(name, value):
    if not isinstance(value, bool):
        raise _received(name, value, "true or false")
    return value


def _optional_boolean(name, value):
    return None if value is None else _boolean(name, value)


def _finite_number(name, value):
    check_finite(name, value)
    return value  # As given: an int guidance stays an int in the manifest.


def _strings(name, value):
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _received(name, value, "a list of strings")
    if not value or not all(isinstance(item, str) for item in value):
        raise _received(name, value, "a non-empty list of strings")
    return tuple(value)


def _seeds(name, value):
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise _received(name, value, "a non-empty list of integers >= 0")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral) or item < 0:
            raise _received(name, value, "a non-empty list of integers >= 0")
    return tuple(int(item) for item in value)


def _json_object(name, value):
    if not isinstance(value, dict):
        raise _received(name, value, "a JSON object (dict)")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise _received(name, value, f"a JSON object of finite values ({error})") from None
    return value


def _precision_request(name, value):
    value = _json_object(name, value)
    unknown = sorted(set(value) - {"precision", "jit_compile"})
    if unknown:
        raise _received(name, value, 'a dict with keys "precision" and "jit_compile"')
    if "precision" in value:
        _string(f"{name}['precision']", value["precision"])
    if "jit_compile" in value:
        _optional_boolean(f"{name}['jit_compile']", value["jit_compile"])
    return value


def _embeddings(name, value):
    if isinstance(value, (str, dict)) or not isinstance(value, (list, tuple)):
        raise _received(name, value, 'a list of {"path", "sha256", "tokens"} objects')
    records = []
    for item in value:
        if (
            not isinstance(item, dict)
            or set(item) != {"path", "sha256", "tokens"}
            or not isinstance(item["path"], str)
            or not isinstance(item["sha256"], str)
            or not isinstance(item["tokens"], (list, tuple))
            or not all(isinstance(token, str) for token in item["tokens"])
        ):
            raise _received(name, value, 'a list of {"path", "sha256", "tokens"} objects')
        records.append({**item, "tokens": list(item["tokens"])})
    return tuple(records)


_FIELD_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "kind": _string,
    "prompts": _strings,
    "seeds": _seeds,
    "num_frames": check_count,
    "schedule": _string,
    "options": _json_object,
    "model": _string,
    "weights": _string,
    "img_height": check_count,
    "img_width": check_count,
    "precision": _string,
    "jit_compile": _boolean,
    "num_steps": check_count,
    "unconditional_guidance_scale": _finite_number,
    "negative_prompt": _optional_string,
    "batch_size": check_count,
    "version": _string,
    "scheduler": _string,
    "scheduler_config": _json_object,
    "decoder_jit_compile": _optional_boolean,
    "embeddings": _embeddings,
    "precision_request": _precision_request,
}


# ------------------------------------------------------- what the model contributes


def weights_fingerprint(explorer) -> str:
    """The identity of an Explorer's weights: a hash of every weight file's full contents.

    `"sd1:sha256:0123456789abcdef"` (the preset, then the first 16 hex digits
    of a sha256 over each component's file hash); random presets are
    identified by their seed (`"tiny:seed=0"`). Each file is hashed once and
    cached by path, size and mtime (`kerasmorph.weights.cached_sha256`), so
    only the first render with new weights reads them all.
    """
    paths = explorer.describe()["weights"]
    if not paths:
        return f"{explorer.preset.name}:seed={explorer.seed}"
    digest = hashlib.sha256()
    for component in sorted(paths):
        digest.update(f"{component}:{weights.cached_sha256(paths[component])}\n".encode())
    return f"{explorer.preset.name}:sha256:{digest.hexdigest()[:16]}"


def legacy_weights_fingerprint(explorer) -> str:
    """The fingerprint kerasmorph 0.1 manifests hold: names, sizes and 1 MiB at each end.

    Only to recognise the weights of an old render directory (see `differing_fields`).
    """
    paths = explorer.describe()["weights"]
    if not paths:
        return f"{explorer.preset.name}:seed={explorer.seed}"
    digest = hashlib.sha256()
    for component in sorted(paths):
        path = Path(paths[component])
        size = path.stat().st_size
        digest.update(f"{component}:{path.name}:{size}".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(1 << 20))
            handle.seek(max(0, size - (1 << 20)))
            digest.update(handle.read(1 << 20))
    return f"{explorer.preset.name}:{digest.hexdigest()[:16]}"


def resolved_precision(plan) -> str:
    """The `precision` field of a `kerasmorph.devices.PrecisionPlan`: the policy
    asked for, or "auto:TEXT/UNET/VAE" with the policies "auto" chose."""
    if plan.requested != "auto":
        return plan.requested
    return f"auto:{plan.text_encoder}/{plan.diffusion_model}/{plan.decoder}"


def model_fields(explorer) -> dict[str, Any]:
    """The `RenderSpec` fields an Explorer decides: model, weights, size and precision plan.

    Returns:
        A dict with `model`, `weights`, `img_height`, `img_width`,
        `precision`, `jit_compile` and `decoder_jit_compile`.
    """
    plan = explorer.precision_plan
    return {
        "model": explorer.preset.name,
        "weights": weights_fingerprint(explorer),
        "img_height": explorer.img_height,
        "img_width": explorer.img_width,
        "precision": resolved_precision(plan),
        "jit_compile": bool(plan.jit_compile),
        "decoder_jit_compile": bool(plan.decoder_jit_compile),
    }


def embedding_records(paths: Iterable[str | os.PathLike]) -> tuple[dict[str, Any], ...]:
    """The `RenderSpec.embeddings` of textual-inversion files: path, content hash, tokens.

    Args:
        paths: the files, in the order they are loaded.

    Returns:
        One `{"path", "sha256", "tokens"}` dict per file (absolute path).
    """
    from kerasmorph.models.textual_inversion import load_textual_inversion

    records = []
    for path in paths:
        path = Path(path).expanduser().resolve()
        tokens = [embedding.token for embedding in load_textual_inversion(path)]
        records.append({"path": str(path), "sha256": weights.sha256_of(path), "tokens": tokens})
    return tuple(records)


def embedding_files(spec: RenderSpec, replacements: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """The textual-inversion files to load to re-render `spec`, checked by content hash.

    Args:
        spec: the render's spec.
        replacements: files to use instead of the recorded paths (e.g. after
            moving them), matched to the recorded embeddings by content.

    Returns:
        The files, in the recorded load order.

    Raises:
        RenderDirectoryError: naming the file, when a recorded file is missing
            or its contents changed, or a replacement is not one the spec used.
    """
    offered = {weights.sha256_of(path): Path(path) for path in replacements}
    unused = [path for digest, path in offered.items() if digest not in _hashes(spec)]
    if unused:
        raise RenderDirectoryError(
            f"--embedding {', '.join(map(str, unused))}: not an embedding this render used "
            f"(its manifest records tokens {[record['tokens'] for record in spec.embeddings]})."
        )
    files = []
    for record in spec.embeddings:
        if record["sha256"] in offered:
            files.append(offered[record["sha256"]])
            continue
        path = Path(record["path"])
        hint = (
            f"restore it, or pass --embedding FILE with the file it was "
            f"(sha256 {record['sha256'][:16]}…, tokens {record['tokens']})"
        )
        if not path.is_file():
            raise RenderDirectoryError(
                f"The textual-inversion embedding {path} that this render used is missing: {hint}."
            )
        if weights.sha256_of(path) != record["sha256"]:
            raise RenderDirectoryError(
                f"The textual-inversion embedding {path} changed since this render used it "
                f"(the frames would not match): {hint}."
            )
        files.append(path)
    return files


def _hashes(spec: RenderSpec) -> set[str]:
    return {record["sha256"] for record in spec.embeddings}


# ------------------------------------------------------------- comparing specs


def _optional_fields() -> dict[str, Any]:
    """`RenderSpec` fields that have defaults (added after the first manifests), with them."""
    return {
        field.name: field.default_factory()
        if field.default_factory is not dataclasses.MISSING
        else field.default
        for field in dataclasses.fields(RenderSpec)
        if field.default is not dataclasses.MISSING
        or field.default_factory is not dataclasses.MISSING
    }


def _decisive(name: str, value: Any) -> Any:
    """The part of a field's JSON value that decides the frames."""
    if name == "embeddings":  # Not where the file was: what it held (any load order).
        return sorted(
            (str(record.get("sha256")), list(record.get("tokens", [])))
            for record in value or []
            if isinstance(record, dict)
        )
    return value


def differing_fields(
    stored: Mapping[str, Any] | RenderSpec, spec: RenderSpec, *, explorer=None
) -> list[str]:
    """Names of the fields that decide the frames and differ between `stored` and `spec`.

    Informational fields (`INFORMATIONAL_FIELDS`: the version, the precision
    request) and the embeddings' file paths are not compared. A field added
    after `stored` was written counts as its default, except
    `decoder_jit_compile`, which older manifests did not record (not compared
    then).

    Args:
        stored: a manifest's contents (a dict) or its `RenderSpec`.
        spec: the render about to run.
        explorer: the Explorer of `spec`; lets the weights of a kerasmorph 0.1
            manifest (another fingerprint) be compared.

    Returns:
        The sorted field names; `[]` when the frames would be the same.
    """
    stored = stored.to_json() if isinstance(stored, RenderSpec) else dict(stored)
    current = spec.to_json()
    defaults = json.loads(json.dumps(_optional_fields()))
    recorded_decoder_jit = stored.get("decoder_jit_compile") is not None
    stored = {**defaults, **stored}
    if (
        explorer is not None
        and isinstance(stored.get("weights"), str)
        and _LEGACY_WEIGHTS.match(stored["weights"])
        and stored["weights"] == legacy_weights_fingerprint(explorer)
    ):
        stored["weights"] = current["weights"]
    names = set(stored) | set(current)
    names -= set(INFORMATIONAL_FIELDS)
    if not recorded_decoder_jit:
        names.discard("decoder_jit_compile")
    return sorted(
        name
        for name in names
        if _decisive(name, stored.get(name)) != _decisive(name, current.get(name))
    )


# ------------------------------------------------------------------ manifests


def _reject_constant(constant: str):
    raise ValueError(f"{constant} is not valid JSON (only finite numbers are)")


def _read_spec(path: Path) -> RenderSpec:
    """The `RenderSpec` in a manifest file, read as strict JSON.

    Raises:
        RenderDirectoryError: naming the file, for anything that is not a
            valid manifest (bad JSON, NaN, a wrong field, a wrong type).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
        return RenderSpec.from_json(data)
    except (ValueError, IsADirectoryError) as error:  # JSONDecodeError and UnicodeError too.
        reason = " ".join(str(error).split())
        raise RenderDirectoryError(f"{path} is not a valid render manifest ({reason}).") from None


def load_spec(manifest: str | os.PathLike) -> RenderSpec:
    """Reads a `RenderSpec` from a manifest file (or a render directory).

    Raises:
        FileNotFoundError: when there is no manifest.
        RenderDirectoryError: (a `ValueError`) naming the file, when it is
            not a valid manifest (bad or non-strict JSON, a wrong field or type).
    """
    path = Path(manifest)
    if path.is_dir():
        path = path / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"No render manifest at {path}")
    return _read_spec(path)
