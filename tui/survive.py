"""A handler that fails must not take the console down during an incident.

Textual stops a widget's message loop at its first unhandled exception and then exits the
app with a traceback that shows local variables. The console's own screens, tables and
the app dispatch each message through `SurvivesErrors`: a failure there is logged in full,
shown as one line, and the next message is handled as usual. Pilot tests turn this off
(`DapperApp(survive_errors=False)`) so a bug still fails them.
"""

from __future__ import annotations

import logging
from typing import Any

from textual.message import Message

log = logging.getLogger("dapper.tui")


def report(app: Any, error: BaseException) -> None:
    """The operator's line for an unexpected error; the traceback goes to the log file."""
    from dapper.tui import format as fmt

    log.error("unexpected error in the console", exc_info=error)
    reason = fmt.one_line(str(error) or type(error).__name__)
    app.notify(f"internal error: {reason} (details in the log file)", severity="error", timeout=10)


class SurvivesErrors:
    """Mixin for a MessagePump subclass: failing handlers are reported, not fatal."""

    async def _dispatch_message(self, message: Message) -> None:
        try:
            await super()._dispatch_message(message)  # type: ignore[misc]
        except Exception as error:
            app: Any = getattr(self, "app", None)
            if app is None or not getattr(app, "survive_errors", False) or not app.is_running:
                raise
            report(app, error)
