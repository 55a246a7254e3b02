"""Merging checkpoints on disk: files into a file, diffusers folders into a folder.

The arithmetic is `kerasmorph.merging`'s (numpy, one tensor at a time); this
module opens the inputs lazily (`LazyTensors`), checks that they share one
format, streams the merged tensors into the writers, and copies what a merge
does not compute (configs, scheduler, tokenizer) from the target folder.

A merge never replaces one of its inputs (`kerasmorph.paths`), and what it
writes appears whole or not at all: a single file is written to a hidden
temporary name and renamed; a diffusers folder is built in a fresh hidden
folder beside `out` and swapped in at the end, so nothing of an earlier
folder there (a `unet/*.bin`, an old `text_encoder/`) survives into the
merge. A populated `out` is replaced only when kerasmorph wrote it (it holds
`MERGE_RECORD` or a conversion's `kerasmorph.json`); any other non-empty
folder is refused. Hidden folders left by a killed merge are removed by the
next merge into the same `out`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from kerasmorph import merging
from kerasmorph.atomic import atomic_path
from kerasmorph.checkpoints.detect import detect_family, npz_folder_preset
from kerasmorph.checkpoints.sources import (
    CheckpointError,
    CheckpointFormat,
    LazyTensors,
    checkpoint_format,
)
from kerasmorph.checkpoints.writers import (
    save_diffusers_stream,
    save_npz_folder_stream,
    save_safetensors_stream,
)
from kerasmorph.paths import check_output_not_input
from kerasmorph.progress import ProgressBar
from kerasmorph.weights import MANIFEST_NAME

_FORMAT_NAMES = {
    "compvis": "a single file",
    "diffusers": "a diffusers folder",
    "npz": "a kerasmorph .npz folder",
}
# Written into every merged diffusers folder: how it was made, and the mark
# that lets a later merge replace the folder.
MERGE_RECORD = "kerasmorph_merge.json"
# The suffixes of the hidden folders a diffusers merge is built in, and of
# the folder it replaces until that is deleted.
_STAGING_SUFFIX = ".merging"
_REPLACED_SUFFIX = ".replaced"
# Weight files are never copied from a merged subfolder (a stale `.bin` or
# `.fp16.safetensors` next to the merged file would contradict it) nor from
# a folder's top level (some Hub repositories keep a 4 GB single file there).
_WEIGHT_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".ckpt",
    ".pt",
    ".pth",
    ".msgpack",
    ".h5",
    ".pb",
    ".onnx",
    ".onnx_data",
    ".gguf",
)


def check_same_format(checkpoints: Mapping[str, str | os.PathLike]) -> CheckpointFormat:
    """Checks that checkpoints merged or compared together share one format.

    Merges and similarities pair tensors by name, and the two formats name
    the same weight differently (`model.diffusion_model.input_blocks.0.0.weight`
    is `unet/conv_in.weight`); some do not even pair one to one (SD2's fused
    q/k/v, the VAE attention's 1x1 convs stored as Linears). kerasmorph pairs
    them only through the KerasCV weight plan, which needs the models built,
    so a mix is refused instead of silently keeping one side of every tensor.

    Args:
        checkpoints: a label for the error message (`"target"`, `"--base"`)
            -> the path.

    Returns:
        The common format: `"compvis"`, `"diffusers"` or `"npz"` (kerasmorph
        `.npz` folders: the `shapes` toys).

    Raises:
        FileNotFoundError: when a path does not exist.
        CheckpointError: when the formats differ, naming each input's.
        ValueError: for an empty `checkpoints`.

    Example:

    ```python
    kerasmorph.checkpoints.check_same_format({"a": "sd15/", "b": "dreamy/"})  # "diffusers"
    ```
    """
    if not checkpoints:
        raise ValueError("`checkpoints` must name at least one checkpoint. Received: {}")
    formats = {label: checkpoint_format(path) for label, path in checkpoints.items()}
    if len(set(formats.values())) > 1:
        received = ", ".join(
            f"{label}={str(checkpoints[label])!r} ({_FORMAT_NAMES[value]})"
            for label, value in formats.items()
        )
        raise CheckpointError(
            "Checkpoints merged or compared together must share one format: all "
            "single files (CompVis/A1111 .safetensors/.ckpt) or all diffusers folders "
            "(unet/, vae/, text_encoder/), or all kerasmorph .npz folders (the shapes toys). "
            "They name their tensors differently, and "
            "kerasmorph pairs the names only by building the KerasCV models. Convert "
            "the odd ones out first (a single file becomes a folder with diffusers' "
            "`StableDiffusionPipeline.from_single_file(FILE).save_pretrained(DIR)`). "
            f"Received: {received}"
        )
    return next(iter(formats.values()))


# What a merge pairs: SD 2 depth is an SD 2 fine-tune with one wider conv.
_MERGE_FAMILIES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sd2-depth": "SD 2.x"}


def check_one_family(checkpoints: Mapping[str, str | os.PathLike]) -> None:
    """Refuses to merge SD 1.x with SD 2.x checkpoints (their tensors do not pair).

    Inputs whose family cannot be told (a VAE-only file for `take`, a partial
    checkpoint) are not held against the others.

    Raises:
        CheckpointError: naming each input's family when two differ.
    """
    families = {}
    for label, path in checkpoints.items():
        if checkpoint_format(path) == "npz":
            continue
        try:
            with LazyTensors(path) as tensors:
                families[label] = _MERGE_FAMILIES[detect_family(tensors.source)]
        except CheckpointError:
            continue
    if len(set(families.values())) > 1:
        received = ", ".join(f"{label} is {family}" for label, family in families.items())
        raise CheckpointError(
            "Checkpoints merged together must be one family (all SD 1.x, or all SD 2.x "
            f"with SD 2 depth): their tensors pair only within one. Received: {received}"
        )


class _PrefixView(Mapping):
    """The tensors of `tensors` whose names start with `prefix`: one subfolder."""

    def __init__(self, tensors: Mapping[str, np.ndarray], prefix: str):
        self._tensors = tensors
        self._names = [name for name in tensors if name.startswith(prefix)]
        self._name_set = set(self._names)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._name_set:
            raise KeyError(name)
        return self._tensors[name]

    def __contains__(self, name) -> bool:
        return name in self._name_set

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _merged_subfolders(target, take) -> list[str]:
    """The subfolders a merge of diffusers folders writes: the target's, then `take`'s."""
    subfolders = target.source.subfolders()
    return subfolders + [component for component in take if component not in subfolders]


def _num_merged_tensors(target, take) -> int:
    """How many tensors `_iter_folder_merge` yields (a progress bar's total)."""
    total = 0
    for subfolder in _merged_subfolders(target, take):
        prefix = subfolder + "/"
        names = take[subfolder] if subfolder in take else target
        total += sum(1 for name in names if name.startswith(prefix))
    return total


def _iter_folder_merge(
    target, terms, target_coef, take, report
) -> Iterator[tuple[str, np.ndarray]]:
    """The merged tensors of diffusers folders, one subfolder after another."""
    for subfolder in _merged_subfolders(target, take):
        prefix = subfolder + "/"
        if subfolder in take:
            # The component under its own names, not the target's: a VAE
            # saved by an older diffusers names its attention `query`, a newer
            # one `to_q`, and both load; its config comes along too.
            source = take[subfolder]
            for name in source:
                if name.startswith(prefix):
                    report.taken.append((name, subfolder))
                    yield name, source[name]
        else:
            yield from merging.iter_merge(
                _PrefixView(target, prefix), terms, target_coef, report=report
            )


def _copy_pipeline_files(target: Path, out: Path, merged: Mapping[str, Path]) -> list[str]:
    """Copies from the target folder what a merge does not compute.

    Args:
        target: the target diffusers folder.
        out: the output folder.
        merged: each subfolder the merge wrote -> the folder whose
            subfolder config goes with it (the target's or a `take` model's).

    Returns:
        The subfolders with weights copied unmerged (`safety_checker`).
    """
    unmerged = []
    for entry in sorted(target.iterdir()):
        if entry.name.startswith("."):  # A Hub download's .cache/, .gitattributes.
            continue
        if entry.is_file():
            # model_index.json; not a conversion's manifest or a merge record,
            # which would describe files this folder does not have.
            own = entry.name in (MANIFEST_NAME, MERGE_RECORD)
            if not entry.name.endswith(_WEIGHT_SUFFIXES) and not own:
                shutil.copy2(entry, out / entry.name)
        elif entry.is_dir() and entry.name not in merged:
            # scheduler/, tokenizer/, and components kerasmorph does not merge:
            # as they are, so the pipeline's model_index.json still holds.
            copied = out / entry.name
            shutil.copytree(entry, copied, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
            if any(path.name.endswith(_WEIGHT_SUFFIXES) for path in copied.rglob("*")):
                unmerged.append(entry.name)
    for subfolder, source in merged.items():
        for entry in sorted((source / subfolder).iterdir()):
            # `*.index.json` lists the shards of a weight file not written here.
            if (
                entry.is_file()
                and not entry.name.startswith(".")
                and not entry.name.endswith(_WEIGHT_SUFFIXES + (".index.json",))
            ):
                shutil.copy2(entry, out / subfolder / entry.name)
    return unmerged


def _check_merge_out(
    out: Path, file_format: CheckpointFormat, inputs: Mapping[str, str | os.PathLike]
) -> None:
    if file_format == "compvis":
        if out.suffix != ".safetensors" or out.is_dir():
            raise ValueError(
                "Single files merge into a .safetensors file: `out` must end in "
                f".safetensors. Received: out={str(out)!r}"
            )
        check_output_not_input(out, inputs, flag="out")
        return
    if out.suffix in _WEIGHT_SUFFIXES or out.is_file():
        raise ValueError(
            f"Folders ({_FORMAT_NAMES[file_format]}) merge into a folder: `out` must be "
            f"a directory, not a file. Received: out={str(out)!r}"
        )
    # The whole folder is replaced: no input may be it, hold it or lie in it.
    check_output_not_input(out, inputs, flag="out", replaces_contents=True)
    if out.is_dir() and any(out.iterdir()) and not _written_by_kerasmorph(out):
        raise ValueError(
            "`out` is a non-empty folder that kerasmorph did not write (no "
            f"{MERGE_RECORD} or {MANIFEST_NAME}); a merge replaces the whole folder, so "
            f"give a new or empty one. Received: out={str(out)!r}"
        )


def _written_by_kerasmorph(folder: Path) -> bool:
    """Whether `folder` is an earlier merge's output or a conversion's."""
    return (folder / MERGE_RECORD).is_file() or (folder / MANIFEST_NAME).is_file()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # Exists (another user's), or cannot tell: keep its folder.
    return True


def _remove_stale_staging(out: Path) -> None:
    """Removes the hidden folders of killed merges into `out`.

    `.NAME.PID.HEX.merging` (a merge being built) and `.NAME.PID.HEX.replaced`
    (the folder it replaces, until deleted) whose process no longer runs.
    """
    if not out.parent.is_dir():
        return
    for suffix in (_STAGING_SUFFIX, _REPLACED_SUFFIX):
        for entry in out.parent.glob(f".{out.name}.*{suffix}"):
            pid = entry.name[len(out.name) + 2 :].split(".")[0]
            if entry.is_dir() and pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def _staged_folder(out: Path) -> Iterator[Path]:
    """Yields a fresh hidden folder beside `out`; on success, swaps it in for `out`.

    On any exception (Ctrl-C included) the folder is removed and `out` is
    left as it was. The swap renames the old `out` aside, the new folder in,
    then deletes the old one.
    """
    _remove_stale_staging(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    token = f"{os.getpid()}.{secrets.token_hex(4)}"
    staging = out.with_name(f".{out.name}.{token}{_STAGING_SUFFIX}")
    staging.mkdir()
    try:
        yield staging
        if out.exists():
            old = out.with_name(f".{out.name}.{token}{_REPLACED_SUFFIX}")
            os.rename(out, old)
            os.rename(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_merge_record(folder: Path, target, terms, target_coef, take, dtype) -> None:
    """Writes `MERGE_RECORD`: the merge's inputs and coefficients."""
    record = {
        "format": 1,
        "target": str(Path(target).expanduser().resolve()),
        "target_coef": float(target_coef),
        "terms": [
            [float(coefficient), str(Path(path).expanduser().resolve())]
            for coefficient, path in terms
        ],
        "take": {name: str(Path(path).expanduser().resolve()) for name, path in take.items()},
        "dtype": dtype,
    }
    with atomic_path(folder / MERGE_RECORD) as temporary:
        temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _check_merge_options(terms, target_coef: float, take: Mapping, dtype: str | None) -> None:
    """Validates `take`, `dtype` and the coefficients before any file is opened."""
    for component in take:
        if component not in merging.COMPONENT_PREFIXES:
            valid = ", ".join(repr(name) for name in merging.COMPONENT_PREFIXES)
            raise ValueError(
                f"`take` keys must be components: {valid}. Received: take key {component!r}"
            )
    if dtype is not None:
        try:
            floating = np.issubdtype(np.dtype(dtype), np.floating)
        except TypeError:
            floating = False
        if not floating:
            raise ValueError(f"`dtype` must be a floating-point dtype. Received: dtype={dtype!r}")
    # iter_merge checks the coefficients on its first step: take that step on
    # nothing, so a bad coefficient fails before any file is written.
    list(merging.iter_merge({}, [(coefficient, {}) for coefficient, _ in terms], target_coef))


def _check_take_has(take, take_paths) -> None:
    """Refuses to take a component from a folder that has no weights for it."""
    for component, tensors in take.items():
        if component not in tensors.source.subfolders():
            raise CheckpointError(
                f"Cannot take the {component} from {take_paths[component]}: it has no "
                f"{component}/ weights. Received: take={{{component!r}: "
                f"{str(take_paths[component])!r}}}"
            )


def _merge_folders(out: Path, target, terms, target_coef, take, take_paths, dtype, report, verbose):
    """Streams a merge of diffusers folders into `out`; returns the subfolders written."""
    _check_take_has(take, take_paths)
    progress = ProgressBar(_num_merged_tensors(target, take), verbose=verbose, unit_name="tensor")
    tensors = _iter_folder_merge(target, terms, target_coef, take, report)
    return save_diffusers_stream(out, progress.track(tensors), dtype=dtype)


def _stream_merge(out, file_format, target, terms, target_coef, take, dtype, report, verbose):
    """Opens each input once and streams the merge into `out`; returns the subfolders written."""
    with contextlib.ExitStack() as stack:
        opened: dict[Path, LazyTensors] = {}

        def load(path) -> LazyTensors:
            key = Path(path).expanduser().resolve()
            if key not in opened:
                opened[key] = stack.enter_context(LazyTensors(path))
            return opened[key]

        target_tensors = load(target)
        term_tensors = [(coefficient, load(path)) for coefficient, path in terms]
        take_tensors = {component: load(path) for component, path in take.items()}
        if file_format == "diffusers":
            return _merge_folders(
                out,
                target_tensors,
                term_tensors,
                target_coef,
                take_tensors,
                take,
                dtype,
                report,
                verbose,
            )
        if file_format == "npz":
            _check_take_has(take_tensors, take)
        out.parent.mkdir(parents=True, exist_ok=True)
        progress = ProgressBar(len(target_tensors), verbose=verbose, unit_name="tensor")
        tensors = merging.iter_merge(
            target_tensors, term_tensors, target_coef, take=take_tensors, report=report
        )
        if file_format == "npz":
            return save_npz_folder_stream(out, progress.track(tensors), dtype=dtype)
        save_safetensors_stream(out, progress.track(tensors), dtype=dtype)
        return {}


def _write_npz_manifest(folder: Path, target, written: Mapping[str, Path]) -> None:
    """`kerasmorph.json` of a merged `.npz` folder: the target's preset loads it."""
    manifest = {
        "format": 1,
        "preset": npz_folder_preset(Path(target).expanduser()),
        "source": str(Path(target).expanduser().resolve()),
        "files": {component: path.name for component, path in written.items()},
    }
    with atomic_path(folder / MANIFEST_NAME) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def merge_checkpoints(
    out: str | os.PathLike,
    target: str | os.PathLike,
    terms: Sequence[tuple[float, str | os.PathLike]],
    target_coef: float = 1.0,
    *,
    take: Mapping[str, str | os.PathLike] | None = None,
    dtype: str | None = None,
    verbose: bool = False,
) -> merging.MergeReport:
    """Merges single-file checkpoints or diffusers folders on disk, streaming.

    Computes `target_coef * target + sum(coefficient * model)` tensor by
    tensor (`kerasmorph.merging.iter_merge`): each tensor is read from each
    (memory-mapped) input when its turn comes and written at once, so memory
    holds about one tensor per model, never a model. Every merge is one of
    these sums:

    | merge | target | terms | target_coef |
    |---|---|---|---|
    | weighted sum | `a` | `[(alpha, b)]` | `1 - alpha` |
    | add difference | `a` | `[(alpha, b), (-alpha, c)]` | 1 |
    | task vectors | `base` | `[(c_1, m_1), ..., (-sum c_i, base)]` | 1 |

    All inputs must share one format (`check_same_format`):

    - single files (CompVis/A1111) merge into the `.safetensors` file `out`;
    - diffusers folders merge into the diffusers folder `out`:
      `unet/diffusion_pytorch_model.safetensors`,
      `vae/diffusion_pytorch_model.safetensors` and
      `text_encoder/model.safetensors`, each beside the target's
      `config.json`. The target's other files are copied as they are:
      `model_index.json`, `scheduler/`, `tokenizer/`, and whole
      subfolders kerasmorph does not merge (`safety_checker/`, weights
      included, listed in the report), so diffusers' `from_pretrained`
      reads `out` as it read the target;
    - kerasmorph `.npz` folders (the `shapes` toys) merge into the folder
      `out`, with a `kerasmorph.json` naming the target's preset, so
      `Explorer(out)` (`--model out`) loads it.

    The depth recipe keeps the depth model's 5-channel first convolution by
    making the depth model the target: `base + 0.5 (depth - base) + 0.5
    (style - base)` is target `depth`, `target_coef` 0.5, terms
    `[(0.5, style), (0.0, base)]`.

    Tensors whose shape differs, that a model lacks, or that are not
    floating point are kept from the target and listed in the report. A
    component in `take` comes whole from that model: for single files its
    tensors under the target's names, for folders the whole subfolder (its
    tensors under their own names, and its config).

    Args:
        out: a `.safetensors` file (single files) or a folder (diffusers
            folders; created if needed), never an input (nor, for folders,
            inside one or holding one). An existing file is replaced; an
            existing folder is replaced whole (built beside it, then swapped
            in) when kerasmorph wrote it or it is empty, else refused.
        target: the model whose names, shapes and leftovers the result keeps
            (for diffusers folders, also its configs; for `.npz` folders,
            its preset).
        terms: `(coefficient, checkpoint)` pairs; a path may repeat, even
            the target's (each is opened once).
        target_coef: the target's own coefficient.
        take: component (`"vae"`, `"unet"`, `"text_encoder"`) -> the
            checkpoint it is copied from, e.g. `{"vae": "vae-ft-mse/"}`.
        dtype: store floating-point tensors as this, e.g. `"float16"`;
            default: the target's dtypes.
        verbose: show a progress bar of the tensors written (the CLI's
            default; `--quiet` turns it off).

    Returns:
        A `kerasmorph.merging.MergeReport`.

    Raises:
        FileNotFoundError: when an input does not exist.
        CheckpointError: for inputs of mixed formats or families (each
            named), a folder
            that is not a diffusers folder, or a `take` folder without the
            component.
        ValueError: for an `out` that does not fit the format, is (or is
            inside, or holds) an input, or is a non-empty folder kerasmorph
            did not write; a non-finite coefficient, an unknown `take`
            component or a `dtype` that is not floating point.

    Example:

    ```python
    # 0.7 A + 0.3 B of two diffusers folders, with the VAE of a third.
    report = kerasmorph.checkpoints.merge_checkpoints(
        "merged/", "model_a/", [(0.3, "model_b/")], 0.7, take={"vae": "vae_source/"}
    )
    print(report.summary())
    ```
    """
    take = dict(take or {})
    _check_merge_options(terms, target_coef, take, dtype)
    inputs = {
        "target": target,
        **{f"model {index}": path for index, (_, path) in enumerate(terms, 1)},
        **{f"take[{component!r}]": path for component, path in take.items()},
    }
    file_format = check_same_format(inputs)
    check_one_family(inputs)
    out = Path(out).expanduser()
    _check_merge_out(out, file_format, inputs)
    report = merging.MergeRecorder()
    if file_format == "compvis":
        # Streamed into a hidden temporary file, renamed over `out` at the end.
        _stream_merge(out, file_format, target, terms, target_coef, take, dtype, report, verbose)
        return report.freeze()
    if file_format == "npz":
        npz_folder_preset(Path(target).expanduser())  # Fails before anything is written.
    with _staged_folder(out) as staging:
        written = _stream_merge(
            staging, file_format, target, terms, target_coef, take, dtype, report, verbose
        )
        if file_format == "npz":
            _write_npz_manifest(staging, target, written)
            _write_merge_record(staging, target, terms, target_coef, take, dtype)
            return report.freeze()
        config_sources = {
            subfolder: Path(take.get(subfolder, target)).expanduser() for subfolder in written
        }
        for subfolder in _copy_pipeline_files(Path(target).expanduser(), staging, config_sources):
            report.kept.append(
                (f"{subfolder}/", "a component kerasmorph does not merge, copied from the target")
            )
        _write_merge_record(staging, target, terms, target_coef, take, dtype)
    return report.freeze()
