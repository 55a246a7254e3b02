"""The licence notice kerasmorph owes its users: the Stable Diffusion weights', once per process.

KerasCV prints the weights' licence from `StableDiffusion.__init__`;
kerasmorph builds KerasCV's components itself (`kerasmorph.models.build`), so
it shows the preset's notice (`Preset.licence`) when it loads real weights:
one warning on the `kerasmorph.licences` logger (stderr unless logging is
configured otherwise), the first time in a process each notice applies.
Random-weight and toy presets (`tiny`, `shapes`) have no notice.

The CLI names each command's output (`for_output`): a notice shown for an
output is recorded, and a `--quiet` command whose output has already been
shown it (a resumed render directory, a re-written file) stays silent. A
notice is never silenced before it has been shown once for that output.

Stdlib only (and `kerasmorph.atomic`): importing it is cheap.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from kerasmorph.atomic import atomic_path

logger = logging.getLogger(__name__)

# The notices already shown in this process.
_shown: set[str] = set()
# The output of the running CLI command, whether it is quiet, and the record file.
_output: dict = {"path": None, "quiet": False, "record": None}
# Outputs kept in the record (the oldest are dropped beyond this).
MAX_RECORDED_OUTPUTS = 1000


def for_output(output: str | os.PathLike | None, *, quiet: bool, record: Path | None) -> None:
    """Names the output the notices of this process are shown for.

    Args:
        output: the command's output (a file or a render directory); None: none.
        quiet: whether the command was asked to be quiet: then a notice already
            shown for `output` (according to `record`) is not shown again.
        record: the JSON file that lists, per output, the notices shown for it
            (`kerasmorph.weights.cache_dir() / "licence-notices.json"`); None: no record.
    """
    path = None if output is None else str(Path(output).expanduser().resolve())
    _output.update(path=path, quiet=quiet, record=record)


def _read_record(record: Path) -> dict:
    try:
        content = json.loads(record.read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _remember(notice: str) -> None:
    """Adds `notice` to the record of the current output; an unwritable record is no error."""
    path, record = _output["path"], _output["record"]
    if path is None or record is None:
        return
    content = _read_record(record)
    notices = content.pop(path, [])
    content[path] = sorted({*notices, notice})  # Re-inserted: the newest is last.
    for stale in list(content)[: max(0, len(content) - MAX_RECORDED_OUTPUTS)]:
        del content[stale]
    try:
        with atomic_path(record) as temporary:
            temporary.write_text(json.dumps(content))
    except OSError:
        pass  # A read-only cache only means the notice shows again.


def _already_shown_for_output(notice: str) -> bool:
    path, record = _output["path"], _output["record"]
    if path is None or record is None:
        return False
    return notice in _read_record(record).get(path, [])


def show_licence_notice(notice: str) -> bool:
    """Shows `notice` as a warning the first time this process sees it.

    Args:
        notice: a weights' licence line, e.g. `Preset.licence`; "" shows nothing.

    Returns:
        Whether it was shown now (`False` when empty, already shown in this
        process, or already shown for the output of a quiet command).
    """
    if not notice or notice in _shown:
        return False
    _shown.add(notice)
    if _output["quiet"] and _already_shown_for_output(notice):
        return False
    logger.warning("%s. By using these weights you accept the licence's terms.", notice)
    _remember(notice)
    return True
