"""The one small handle that reaches back upstream into a running load: pause, resume,
change the rate, stop, abort. Everything else flows one way, engine to views."""

from __future__ import annotations

import trio


class RunControl:
    """Owned by the engine's trio loop; call its methods from that loop (from another
    thread, go through ``trio.from_thread.run_sync``)."""

    def __init__(self) -> None:
        self.paused = False
        self.rate_factor = 1.0
        self.stop_requested = False
        self.abort_requested = False
        self.interrupted = False  # stopped by the user before the planned end
        self._changed = trio.Event()
        self.aborted = trio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        """Returns at the next call of any of the methods below."""
        await self._changed.wait()

    def pause(self) -> None:
        self.paused = True
        self._notify()

    def resume(self) -> None:
        self.paused = False
        self._notify()

    def toggle_pause(self) -> None:
        self.resume() if self.paused else self.pause()

    def scale_rate(self, factor: float) -> None:
        """Multiplies the target rate (open model) or the concurrency (closed model)."""
        self.set_rate_factor(self.rate_factor * factor)

    def set_rate_factor(self, factor: float) -> None:
        self.rate_factor = max(0.0, factor)
        self._notify()

    def stop(self) -> None:
        """Stop scheduling; sessions in flight get the grace period to finish."""
        self.stop_requested = True
        self._notify()

    def interrupt(self) -> None:
        """Like ``stop``, and the results are marked interrupted (Ctrl-C, SIGTERM)."""
        self.interrupted = True
        self.stop()

    def abort(self) -> None:
        """Stop now: sessions in flight are cancelled and counted as such."""
        self.stop_requested = True
        self.abort_requested = True
        self.aborted.set()
        self._notify()
