"""The console's garbage-collection policy: frozen after each snapshot, full passes only
when the keys are quiet, everything handed back when the app closes."""

from __future__ import annotations

import gc
import weakref

from dapper.tui.heap import QuietCollector


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_shown_snapshot_is_frozen_and_a_closing_app_unfreezes():
    heap = QuietCollector()
    try:
        gc.unfreeze()
        data = [{"pod": i} for i in range(1000)]  # a snapshot's worth of tracked objects
        heap.shown()
        assert gc.get_freeze_count() >= len(data)
    finally:
        heap.release()
    assert gc.get_freeze_count() == 0


def test_full_pass_waits_for_quiet_keys_and_its_period():
    clock = Clock()
    heap = QuietCollector(full_every=300, quiet=5, clock=clock)
    try:
        clock.now += 299
        heap.tick()
        assert heap.full_passes == 0  # not due yet
        clock.now += 2
        heap.input()  # due, but a key was just pressed
        clock.now += 4
        heap.tick()
        assert heap.full_passes == 0
        clock.now += 2  # quiet for 6 s now
        heap.tick()
        assert heap.full_passes == 1
        assert gc.get_freeze_count() > 0  # frozen again after the pass
        heap.tick()
        assert heap.full_passes == 1  # and not again for another period
    finally:
        heap.release()


def test_cyclic_garbage_frozen_with_the_heap_is_collected_by_the_full_pass():
    clock = Clock()
    heap = QuietCollector(full_every=1, quiet=0, clock=clock)

    class Widget:
        peer: Widget

    try:
        a, b = Widget(), Widget()
        a.peer, b.peer = b, a  # a closed screen's widgets point at each other
        alive = weakref.ref(a)
        heap.shown()
        del a, b
        gc.collect()  # a normal pass cannot see frozen objects
        assert alive() is not None
        clock.now += 2
        heap.tick()
        assert alive() is None
    finally:
        heap.release()


def test_cycles_that_died_before_a_snapshot_is_shown_are_not_frozen():
    heap = QuietCollector()

    class Message:
        other: Message

    try:
        a, b = Message(), Message()
        a.other, b.other = b, a
        dead = weakref.ref(a)
        del a, b  # garbage already, but only the cycle collector can tell
        heap.shown()
        assert dead() is None
    finally:
        heap.release()
