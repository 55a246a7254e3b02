"""Progress bars for long operations: Keras' `Progbar`, or nothing when quiet (layer L1).

Every long operation that takes `verbose` reports through one `ProgressBar`
of `total` units: converting, merging and comparing checkpoints and loading a
component's weights count tensors; sweeps and adaptive renders count frames
(one bar for the whole job, the Explorer's own per-call bars muted meanwhile,
`muted`). The bar is `keras.utils.Progbar`, the one `model.fit` and the
Explorer's denoising show, printed on stderr: stdout stays for what a command
reports (the path it wrote), so `$(kerasmorph merge ...)` captures only that.
Keras is imported only when a bar is shown, so quiet work never loads it.

Example:

```python
bar = kerasmorph.progress.ProgressBar(len(names), verbose=True, unit_name="tensor")
for name in names:
    ...
    bar.advance()
```
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from kerasmorph.backend import keras_module

Item = TypeVar("Item")


@contextlib.contextmanager
def muted(owner: Any) -> Iterator[None]:
    """Turns `owner.verbose` off inside the block, then restores it.

    For a job that shows one bar over many Explorer calls: each call would
    otherwise show a bar of its own.

    Args:
        owner: an object with a `verbose` attribute (an `Explorer`), or None
            (nothing to mute).
    """
    if owner is None:
        yield
        return
    previous = owner.verbose
    owner.verbose = False
    try:
        yield
    finally:
        owner.verbose = previous


class ProgressBar:
    """A progress bar of `total` units, shown only when `verbose`.

    Args:
        total: the units the job has (>= 0); None: unknown.
        verbose: show the bar; False makes every method a no-op.
        unit_name: what a unit is, for the "ms/tensor" rate (`"tensor"`,
            `"frame"`, `"step"`).
        to_stderr: print on stderr (default: stdout stays for what a command
            reports); False prints where Keras does, on stdout.
        stateful_metrics: names of `advance` values shown as given, not
            averaged (e.g. a loss the caller smooths itself).

    Attributes:
        count: the units done so far.
    """

    def __init__(
        self,
        total: int | None,
        *,
        verbose: bool = True,
        unit_name: str = "step",
        to_stderr: bool = True,
        stateful_metrics: tuple[str, ...] = (),
    ):
        self.total = total
        self.count = 0
        self._finished = False
        self._progbar = None
        # Keras writes to (and asks `isatty` of) `sys.stdout`: point it at stderr,
        # or leave it where `model.fit` writes (the Explorer's denoising bars).
        self._stream = sys.stderr if to_stderr else None
        if verbose and (total is None or total > 0):
            progbar_class = keras_module().utils.Progbar
            with self._redirect():
                self._progbar = progbar_class(
                    total, unit_name=unit_name, stateful_metrics=list(stateful_metrics)
                )

    def _redirect(self) -> contextlib.AbstractContextManager:
        if self._stream is None:
            return contextlib.nullcontext()
        return contextlib.redirect_stdout(self._stream)

    @property
    def shown(self) -> bool:
        """Whether the bar is shown (verbose, and something to count)."""
        return self._progbar is not None

    def advance(self, count: int = 1, values: list[tuple[str, float]] | None = None) -> None:
        """Counts `count` more units done (0 shows the bar as it stands).

        `values`, e.g. `[("loss", 0.12)]`, are shown next to the bar: as given
        for the `stateful_metrics`, else averaged over the updates (Keras' bar
        then shows the last value on its final line).
        """
        self.count += count
        if self._progbar is not None and not self._finished:
            with self._redirect():
                self._progbar.update(self.count, values=values)
            self._finished = self.total is not None and self.count >= self.total

    def __call__(self) -> None:
        """One more unit: the bar as an `on_step`/`on_tensor` callback."""
        self.advance()

    def finish(self) -> None:
        """Ends the bar at the count reached (a job that stopped early ends at its count)."""
        if self._progbar is None or self._finished or self.count == 0:
            return
        self._progbar.target = self.count
        with self._redirect():
            self._progbar.update(self.count, finalize=True)
        self._finished = True

    def track(
        self,
        items: Iterable[Item],
        *,
        mute: Any = None,
        units: Callable[[Item], int] | None = None,
    ) -> Iterator[Item]:
        """Yields `items`, counting each once the loop is done with it; ends the bar after.

        Args:
            items: what the job goes through.
            mute: an object whose `verbose` is turned off while the items
                are handed out (`muted`), e.g. the Explorer the loop calls.
            units: how many units an item counts (e.g. the frames of a
                batch); default 1.
        """
        with muted(mute):
            for item in items:
                yield item
                self.advance(1 if units is None else units(item))
        self.finish()

    def counting(self, *, mute: Any = None) -> Callable[[Callable], Callable]:
        """A decorator: each call of the function counts `len(result)` units.

        For a job that renders its frames in rounds (`kerasmorph.adaptive`):
        the decorated function returns the frames of one round.

        Args:
            mute: an object whose `verbose` is off during each call (`muted`).
        """

        def decorate(function: Callable) -> Callable:
            @functools.wraps(function)
            def counted(*args, **kwargs):
                with muted(mute):
                    result = function(*args, **kwargs)
                self.advance(len(result))
                return result

            return counted

        return decorate
