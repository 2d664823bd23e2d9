"""Keeps Python's full garbage collections off the path of a keypress.

At 500 nodes the console holds a few hundred thousand objects (20,000 pods, 1,500
Kustomizations and their table rows). A full (generation 2) collection walks all of
them, holding the GIL for 200-900 ms, whenever enough objects have survived since the
last one: under churn, every few seconds, in the middle of whatever key was pressed.

Nearly all of that heap is immutable snapshot data that reference counting frees on its
own. So after each snapshot is shown, everything alive is frozen (`gc.freeze()`: moved
out of the collector's sight, O(1)), and a full collection only ever walks what is newer
than the last snapshot. Cycles that become garbage after being frozen (render data held
by finished tasks and messages, a closed detail screen's widgets: measured, about 100,000
objects a minute at 500 nodes) are collected by one full pass with the heap unfrozen,
run only when the operator has not pressed a key for a while, at most once a minute.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


class QuietCollector:
    def __init__(
        self,
        *,
        full_every: float = 60.0,
        quiet: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.full_every = full_every
        self.quiet = quiet
        self.clock = clock
        self.last_input = clock()
        self.last_full = clock()
        self.full_passes = 0

    def shown(self) -> None:
        """A snapshot is on screen: what is alive now is long-lived until the next.

        The young generations are collected first (a few ms: they hold only what came
        since the last snapshot), or the cycles that died since would be frozen with the
        living and kept until the next full pass: measured, that grew the console by
        100,000 objects a minute."""
        gc.collect(1)
        gc.freeze()

    def release(self) -> None:
        """The app is closing: hand everything back to the collector."""
        gc.unfreeze()

    def input(self) -> None:
        self.last_input = self.clock()

    def tick(self) -> None:
        """Once a second: the full pass, when it is due and the keys are quiet."""
        now = self.clock()
        if now - self.last_full < self.full_every or now - self.last_input < self.quiet:
            return
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.last_full = now
        self.full_passes += 1
