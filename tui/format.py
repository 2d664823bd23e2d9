"""Short, stable text for numbers, sizes and ages, so columns keep their width between refreshes."""

from __future__ import annotations

from functools import lru_cache

from dapper.backends.safe_text import clean
from rich.cells import cell_len
from rich.text import Text

DASH = "-"


def age(seconds: float | None) -> str:
    """A coarse age for objects (`<1m`, `12m`, `3h`, `41d`): coarse so the screen does not churn."""
    if seconds is None:
        return DASH
    s = max(0.0, seconds)
    if s < 60:
        return "<1m"
    if s < 3600:
        return f"{int(s // 60)}m"
    if s < 86400 * 2:
        return f"{int(s // 3600)}h"
    return f"{int(s // 86400)}d"


def since(ts: float | None, now: float) -> str:
    """Coarse age of an epoch timestamp relative to `now`."""
    return age(None if ts is None else now - ts)


def fine_age(seconds: float | None) -> str:
    """A finer age for the snapshot and stale banners, where seconds matter (`4s`, `2m`)."""
    if seconds is None:
        return DASH
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 86400 * 2:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def duration(seconds: int) -> str:
    """An uptime: `41d`, `5h`, `12m`, `-` when not running."""
    if seconds <= 0:
        return DASH
    return age(float(seconds)) if seconds >= 60 else f"{seconds}s"


def size(n: int) -> str:
    """Bytes in binary units with at most one decimal: `128G`, `3.5T`, `512M`."""
    if n <= 0:
        return DASH
    value = float(n)
    for unit in ("B", "K", "M", "G", "T", "P"):
        if value < 1024 or unit == "P":
            if unit == "B" or value >= 10:
                return f"{value:.0f}{unit}"
            return f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.0f}P"  # pragma: no cover


def percent(fraction: float | None) -> str:
    """0..1 as `12%`; unknown as `-`."""
    if fraction is None:
        return DASH
    return f"{fraction * 100:.0f}%"


def revision(rev: str) -> str:
    """Shorten a Flux revision (`main@sha1:0123abcd...`) to `main@0123abcd`."""
    if not rev:
        return DASH
    ref, _, digest = rev.rpartition("@")
    if ":" in digest:
        digest = digest.split(":", 1)[1]
    digest = digest[:8]
    return f"{ref}@{digest}" if ref else digest


def short_sha(rev: str) -> str:
    """Just the commit of a Flux revision (`main@sha1:0123abcd...` -> `0123abc`)."""
    if not rev:
        return DASH
    digest = rev.rpartition("@")[2]
    return digest.split(":", 1)[-1][:7]


def one_line(text: str) -> str:
    """API messages can be multi-line; a table cell shows them on one line. Text that did
    not come through a backend (an exception's message) is made safe here too."""
    return " ".join(clean(text).split())


@lru_cache(maxsize=16384)
def styled(value: str, style: str = "") -> Text:
    """A cell: plain text (never markup, so `[` in API text stays literal) with a style.

    Shared, not copied: a table redraws thousands of cells per refresh and most of them
    say what they said before (`Ready`, `-`, `12%`), and building a Text is most of that
    cost. Cells are never changed in place; whoever needs another look makes a new one."""
    return Text(value, style=style, no_wrap=True, overflow="ellipsis", end="")


def middle_cut(text: Text, width: int) -> Text:
    """`kube-system/node-feature-discovery-rules` in 28 cells as
    `kube-system/node…ery-rules`: rows that share a prefix stay apart by their ends."""
    plain = text.plain
    if cell_len(plain) <= width or width < 5:
        return text
    tail = (width - 1) // 2
    head = width - 1 - tail
    cut = plain[:head] + "…" + plain[len(plain) - tail :]
    return Text(cut, style=text.style, no_wrap=True, overflow="ellipsis", end="")


EIGHTHS = " ▏▎▍▌▋▊▉█"
SPARKS = "▁▂▃▄▅▆▇█"


def usage_style(fraction: float | None) -> str:
    """Red from 90 %, yellow from 75 %: the same thresholds as the percentage cells."""
    if fraction is None:
        return "dim"
    return "bold red" if fraction >= 0.9 else ("yellow" if fraction >= 0.75 else "green")


def bar(fraction: float | None, width: int) -> Text:
    """`███▍░░░░`: a fraction 0..1 as a bar `width` cells wide (eighths of a cell)."""
    if fraction is None:
        return Text("·" * width, style="dim", end="")
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    filled = "█" * full + (EIGHTHS[part] if part else "")
    t = Text(filled, style=usage_style(fraction), end="")
    t.append("░" * (width - len(filled)), style="dim")
    return t


def sparkline(values: list[float], width: int) -> Text:
    """The last `width` values (0..1) as `▁▂▅▇`: a trend at a glance."""
    shown = values[-width:]
    marks = "".join(SPARKS[min(7, int(max(0.0, min(1.0, v)) * 8))] for v in shown)
    return Text(marks, style=usage_style(shown[-1] if shown else None), end="")
