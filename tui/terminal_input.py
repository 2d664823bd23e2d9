"""Terminal input that answers a lone Esc as soon as its wait ends.

A terminal sends Esc as the byte that also starts every escape sequence (arrows, F-keys),
so an input parser waits a moment for more bytes before it calls it Esc. Textual waits
`ESCDELAY` ms (100 by default) but checks only when its input thread wakes, which it does
every 100 ms when no byte comes: Esc took 100 to 200 ms to close a detail, help or the
filter, the slowest key in `bench/keys.py`. This driver wakes when the parser's wait ends
(`dapper.cli.console_cmd` also shortens the wait itself).
"""

from __future__ import annotations

import os
import selectors
from codecs import getincrementaldecoder

from textual._parser import ParseError
from textual._time import get_time
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

IDLE_WAKE = 0.1  # with nothing pending, wake this often to see the console closing


def next_wake(pending_until: float | None, now: float) -> float:
    """How long the input thread may sleep: until the parser's wait for the rest of an
    escape sequence ends, and never longer than IDLE_WAKE."""
    if pending_until is None:
        return IDLE_WAKE
    return min(IDLE_WAKE, max(0.0, pending_until - now))


class PromptEscapeDriver(LinuxDriver):
    """LinuxDriver whose input thread sleeps only until a pending Esc is due."""

    def run_input_thread(self) -> None:
        # select(), as Textual's own driver: kqueue cannot watch a tty on macOS, nor can
        # epoll a regular file (stdin redirected from one)
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode

        try:
            while not self.exit_event.is_set():
                wait = next_wake(parser._timeout_time, get_time())  # the parser's clock
                data = decode(os.read(self.fileno, 4096)) if selector.select(wait) else ""
                for event in parser.feed(data) if data else ():
                    self.process_message(event)
                for event in parser.tick():
                    self.process_message(event)
        finally:
            selector.close()
            try:
                for _event in parser.feed(""):  # closing: what is half read is dropped
                    pass
            except (EOFError, ParseError):
                pass
