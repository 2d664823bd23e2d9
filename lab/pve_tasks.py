"""PVE worker tasks for the lab: UPIDs, running → stopped, logs, one scheduler thread.

Real PVE forks a worker per write and hands back its UPID at once; clients then poll
`tasks/{upid}/status` and read `tasks/{upid}/log`. The lab does the same: a write
returns a UPID immediately and the world change happens when the task finishes, after
the world's task duration, so clients exercise their polling paths for real.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dapper.backends.clients.proxmox_parse import parse_upid

__all__ = ["Task", "TaskManager", "format_upid", "parse_upid"]

log = logging.getLogger(__name__)

# A task body gets a `log` callable and returns nothing, or raises: the exception's text
# becomes the task's exitstatus, as a Perl `die` does in a real worker.
TaskBody = Callable[[Callable[[str], None]], None]


def format_upid(
    node: str, pid: int, pstart: int, starttime: int, kind: str, ident: str, user: str
) -> str:
    """`UPID:node:PID:PSTART:STARTTIME:type:id:user:`, hex fields zero-padded to 8 as PVE."""
    return f"UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{kind}:{ident}:{user}:"


@dataclass
class Task:
    upid: str
    node: str
    pid: int
    pstart: int
    starttime: int
    kind: str
    ident: str
    user: str
    lines: list[str] = field(default_factory=list)
    exitstatus: str | None = None  # None while running
    endtime: int | None = None

    @property
    def running(self) -> bool:
        return self.exitstatus is None

    def status_json(self) -> dict:
        data: dict = {
            "upid": self.upid,
            "node": self.node,
            "pid": self.pid,
            "pstart": self.pstart,
            "starttime": self.starttime,
            "type": self.kind,
            "id": self.ident,
            "user": self.user,
            "status": "running" if self.running else "stopped",
        }
        user, bang, tokenid = self.user.rpartition("!")
        if bang:  # a token's task: PVE reports the user and the token's id apart
            data.update(user=user, tokenid=tokenid)
        if not self.running:
            data["exitstatus"] = self.exitstatus
        return data

    def list_json(self) -> dict:
        """The `nodes/{node}/tasks` row: `status` holds the exit status once finished."""
        data = {k: v for k, v in self.status_json().items() if k not in ("status", "exitstatus")}
        if not self.running:
            data["status"] = self.exitstatus
            data["endtime"] = self.endtime
        return data


class TaskManager:
    """Owns the tasks of one PVE node and the thread that finishes them on time."""

    def __init__(self, node: str, *, boot_ticks: int = 0, keep: int = 500) -> None:
        self.node = node
        self._pids = itertools.count(0x2A3B0)
        self._boot_ticks = boot_ticks
        self._keep = keep
        self._tasks: dict[str, Task] = {}
        self._order: list[str] = []
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="pve-tasks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the scheduler; tasks still running stay running (the lab is going away)."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._stopping = True
            self._cond.notify_all()
        if thread is not None:
            thread.join()

    def submit(
        self,
        kind: str,
        ident: str,
        user: str,
        body: TaskBody,
        *,
        duration: float,
        progress: tuple[str, ...] = (),
    ) -> Task:
        """Start a task now; `progress` lines appear spread over `duration`, then `body` runs."""
        now = time.time()
        pid = next(self._pids)
        pstart = self._boot_ticks + int(time.monotonic() * 100) % 0x7FFFFFFF
        upid = format_upid(self.node, pid, pstart, int(now), kind, ident, user)
        task = Task(upid, self.node, pid, pstart, int(now), kind, ident, user)
        start = time.monotonic()
        with self._cond:
            self._tasks[upid] = task
            self._order.append(upid)
            self._trim()
            for i, line in enumerate(progress, start=1):
                due = start + duration * i / (len(progress) + 1)
                self._push(due, lambda line=line: self._append(task, line))
            self._push(start + duration, lambda: self._finish(task, body))
        return task

    def get(self, upid: str) -> Task | None:
        with self._cond:
            return self._tasks.get(upid)

    def lines(self, upid: str) -> list[str]:
        with self._cond:
            task = self._tasks.get(upid)
            return list(task.lines) if task else []

    def snapshot(self, upid: str) -> dict | None:
        with self._cond:
            task = self._tasks.get(upid)
            return task.status_json() if task else None

    def recent(self) -> list[dict]:
        """Newest first, as `nodes/{node}/tasks` lists them."""
        with self._cond:
            return [self._tasks[u].list_json() for u in reversed(self._order)]

    def _trim(self) -> None:
        while len(self._order) > self._keep:
            oldest = self._order[0]
            if self._tasks[oldest].running:
                break
            self._order.pop(0)
            del self._tasks[oldest]

    def _push(self, due: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (due, next(self._seq), fn))
        self._cond.notify_all()

    def _append(self, task: Task, line: str) -> None:
        with self._cond:
            task.lines.append(line)

    def _finish(self, task: Task, body: TaskBody) -> None:
        try:
            body(lambda line: self._append(task, line))
            status = "OK"
        except Exception as exc:  # a worker's die: its message is the exit status
            status = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.debug("pve task %s failed: %s", task.upid, status, exc_info=True)
        with self._cond:
            task.lines.append("TASK OK" if status == "OK" else f"TASK ERROR: {status}")
            task.exitstatus = status
            task.endtime = int(time.time())

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    if self._queue and self._queue[0][0] <= time.monotonic():
                        break
                    timeout = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._cond.wait(timeout)
                if self._stopping:
                    return
                _, _, fn = heapq.heappop(self._queue)
            try:
                fn()
            except Exception:  # never let one task kill the scheduler
                log.exception("pve task scheduler step failed")
