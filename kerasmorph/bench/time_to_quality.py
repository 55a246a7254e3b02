"""Time to quality: seconds per frame at the step count where each scheduler is as good as DDIM-50.

A scheduler's time per step is the same UNet call for all of them (Heun: two),
so what a faster scheduler buys is fewer steps. The step counts come from the
rows `python -m kerasmorph.quality --json FILE` writes (distance of the final
latents from a converged DDIM-1000 reference, per scheduler and step count):
for each scheduler, the smallest measured step count whose distance is at most
DDIM's at 50 steps. `run_bench` then times one generation per scheduler at that
step count, in the same rounds as its other variants, so the seconds are
comparable. A scheduler that never gets that close within the measured step
counts is reported as not reached, with its best distance.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

TARGET_SCHEDULER = "ddim"
TARGET_STEPS = 50


@dataclasses.dataclass(frozen=True)
class QualityStep:
    """Where one scheduler reaches the target distance.

    Attributes:
        scheduler: the scheduler's name.
        steps: the smallest measured step count at or under the target
            distance; `None` when no measured count gets there.
        distance: the distance at `steps` (or the best measured one).
        measured_steps: the step counts the quality rows hold for it.
    """

    scheduler: str
    steps: int | None
    distance: float
    measured_steps: tuple[int, ...]


def read_quality_rows(path: str, model: str) -> tuple[str, list[dict[str, Any]]]:
    """The rows of a quality JSON file measured on `model` (or `<model>-random`).

    Args:
        path: a file written by `python -m kerasmorph.quality --json`.
        model: the bench's model.

    Returns:
        (the rows' model name, the rows).

    Raises:
        OSError: the file cannot be read.
        ValueError: not a list of quality rows, or none for `model`.
    """
    with open(path, encoding="utf-8") as handle:
        try:
            rows = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not JSON ({error}); expected quality rows") from None
    keys = {"model", "scheduler", "steps", "distance"}
    if not isinstance(rows, list) or not all(isinstance(r, dict) and keys <= set(r) for r in rows):
        raise ValueError(
            f"{path} holds no quality rows: expected a list of objects with {sorted(keys)}, "
            "as `python -m kerasmorph.quality --json FILE` writes"
        )
    for name in (model, f"{model}-random"):
        matching = [row for row in rows if row["model"] == name]
        if matching:
            return name, matching
    found = sorted({str(row["model"]) for row in rows})
    raise ValueError(
        f"{path} has quality rows for {', '.join(found)}, none for the bench's model "
        f"{model!r} (or {model}-random)"
    )


def steps_to_quality(rows: list[dict[str, Any]]) -> tuple[float, list[QualityStep]]:
    """DDIM-50's distance, and where each scheduler in `rows` reaches it.

    Args:
        rows: quality rows of one model (`read_quality_rows`).

    Returns:
        (the target distance, one `QualityStep` per scheduler, in row order).

    Raises:
        ValueError: the rows have no DDIM row at 50 steps.
    """
    target = [
        row["distance"]
        for row in rows
        if row["scheduler"] == TARGET_SCHEDULER and row["steps"] == TARGET_STEPS
    ]
    if not target:
        raise ValueError(
            f"The quality rows have no {TARGET_SCHEDULER} row at {TARGET_STEPS} steps, the "
            "target; measure it: python -m kerasmorph.quality --steps ... 50"
        )
    target_distance = float(target[0])
    by_scheduler: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_scheduler.setdefault(row["scheduler"], []).append(row)
    result = []
    for name, entries in by_scheduler.items():
        entries = sorted(entries, key=lambda row: row["steps"])
        reached = [row for row in entries if row["distance"] <= target_distance]
        chosen = reached[0] if reached else min(entries, key=lambda row: row["distance"])
        result.append(
            QualityStep(
                scheduler=name,
                steps=int(chosen["steps"]) if reached else None,
                distance=float(chosen["distance"]),
                measured_steps=tuple(int(row["steps"]) for row in entries),
            )
        )
    return target_distance, result


def variant_name(step: QualityStep) -> str:
    """The name of the timed variant of `step` in the report's `variants`."""
    return f"quality:{step.scheduler}@{step.steps}"


def quality_report(
    source: str, target_distance: float, steps: list[QualityStep], results: dict[str, Any]
) -> dict[str, Any]:
    """The report's `time_to_quality` entry, from the timed variants' `results`."""
    baseline = next(
        (
            results[variant_name(step)]["s_per_frame"]
            for step in steps
            if step.scheduler == TARGET_SCHEDULER and step.steps is not None
        ),
        None,
    )
    rows = []
    for step in steps:
        timed = results.get(variant_name(step)) if step.steps is not None else None
        seconds = None if timed is None else timed["s_per_frame"]
        rows.append(
            {
                "scheduler": step.scheduler,
                "steps": step.steps,
                "distance": step.distance,
                "measured_steps": list(step.measured_steps),
                "s_per_frame": seconds,
                "speedup_vs_ddim50": (
                    None if seconds is None or baseline is None else baseline / seconds
                ),
            }
        )
    return {"quality_rows": source, "target_distance": target_distance, "schedulers": rows}


def format_quality(entry: dict[str, Any]) -> list[str]:
    """The `time_to_quality` entry as Markdown lines."""
    lines = [
        f"time to DDIM-50's distance to the reference ({entry['target_distance']:.3f}, "
        f"quality rows of {entry['quality_rows']}):",
        "",
        "| scheduler | steps | distance | s / frame | vs DDIM 50 |",
        "|---|---|---|---|---|",
    ]
    for row in entry["schedulers"]:
        if row["steps"] is None:
            measured = max(row["measured_steps"])
            lines.append(
                f"| {row['scheduler']} | not reached in ≤ {measured} | best {row['distance']:.3f} "
                "| — | — |"
            )
            continue
        speedup = row["speedup_vs_ddim50"]
        lines.append(
            f"| {row['scheduler']} | {row['steps']} | {row['distance']:.3f} "
            f"| {row['s_per_frame']:.3f} | {'—' if speedup is None else f'{speedup:.2f}×'} |"
        )
    return lines
