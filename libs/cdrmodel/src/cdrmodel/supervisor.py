"""Background tasks of a service, supervised: a task that dies is never silent.

A task that ends with an exception (or a loop that returns when it should run forever) is
logged with its traceback, turns the owning app's readiness check false, and calls the
process's fatal hook. `cdrmodel.web.serve` installs that hook to stop uvicorn and exit 1, so
the orchestrator restarts the process. In-process (tests) no hook is installed: the app only
reports not ready, and the test process lives on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

FatalHook = Callable[[str, BaseException], None]

_fatal_hook: FatalHook | None = None


def install_fatal_hook(hook: FatalHook | None) -> None:
    """Process-wide: what to do when any supervised task dies (serve() stops the server)."""
    global _fatal_hook
    _fatal_hook = hook


class TaskDied(RuntimeError):
    """A task meant to run until cancelled returned."""


class Supervisor:
    def __init__(self, service: str) -> None:
        self._service = service
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._drains: dict[str, Callable[[], None]] = {}
        self._dead: dict[str, BaseException] = {}
        self._stopping = False

    def spawn(
        self,
        name: str,
        coro: Coroutine[Any, Any, Any],
        *,
        finite: bool = False,
        drain: Callable[[], None] | None = None,
    ) -> asyncio.Task[Any]:
        """Run `coro` as a supervised task. `finite` tasks may return (a connect loop that
        succeeded); the others are loops whose return is itself a death. `drain`, called at
        shutdown, asks the task to finish what it holds and return (`stop`)."""
        task = asyncio.create_task(coro, name=f"{self._service}:{name}")
        self._tasks[name] = task
        if drain is not None:
            self._drains[name] = drain
        task.add_done_callback(lambda t: self._ended(name, t, finite=finite))
        return task

    def _ended(self, name: str, task: asyncio.Task[Any], *, finite: bool) -> None:
        if task.cancelled() or self._stopping:
            return
        exc = task.exception()
        if exc is None:
            if finite:
                return
            exc = TaskDied(f"background task {name!r} returned")
        self._dead[name] = exc
        log.critical(
            "%s: background task %r died; the service is no longer ready",
            self._service,
            name,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        if _fatal_hook is not None:
            _fatal_hook(name, exc)

    async def check(self) -> bool:
        """A readiness check: no supervised task has died."""
        return not self._dead

    async def stop(self, grace: float = 0.0) -> None:
        """Shutdown, not a death: the tasks that can drain are asked to, and given `grace`
        seconds to finish their batch or push and hand back the rest; then every task still
        running is cancelled, and waited for."""
        self._stopping = True
        draining = [self._tasks[name] for name in self._drains if not self._tasks[name].done()]
        for drain in self._drains.values():
            drain()
        if draining and grace > 0:
            _, late = await asyncio.wait(draining, timeout=grace)
            if late:
                names = sorted(t.get_name() for t in late)
                log.warning("%s: %s still busy after %g s; cancelled", self._service, names, grace)
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            # Errors were already reported by _ended; shutdown must go on regardless.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
