"""Measures how long the UI thread is ever unable to process events.

A QTimer asks to fire every `interval_ms`; the gap between two firings minus the interval is the time
the event loop was stuck (painting a frame, a slot doing too much, a lock held by a worker). The
longest gap is the "UI stall" the app budgets at under 50 ms.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Qt, QTimer


@dataclass
class StallReport:
    max_stall_ms: float
    p99_gap_ms: float
    ticks: int
    duration_s: float
    gaps_ms: list[float] = field(default_factory=list, repr=False)

    def line(self) -> str:
        return (f"UI thread: longest stall {self.max_stall_ms:.1f} ms, p99 gap {self.p99_gap_ms:.1f} ms "
                f"over {self.ticks} ticks in {self.duration_s:.1f} s")


class StallMeter(QObject):
    """Start it, run the app, stop it: `report()` gives the longest event-loop stall."""

    def __init__(self, interval_ms: int = 5, parent: QObject | None = None):
        super().__init__(parent)
        self.interval_ms = interval_ms
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last: float | None = None
        self._start = 0.0
        self._end = 0.0
        self.gaps_ms: list[float] = []
        self.long_gaps: list[tuple[float, float]] = []  # (seconds since start, gap ms) for gaps > 3x interval

    def start(self) -> None:
        self.gaps_ms.clear()
        self.long_gaps.clear()
        self._start = self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> StallReport:
        self._timer.stop()
        self._end = time.perf_counter()
        return self.report()

    @contextmanager
    def paused(self):
        """Excludes a stretch of deliberate synchronous work (a test decoding its result file) from the
        measurement: the UI thread is busy on purpose there, not stalled by the app."""
        self._timer.stop()
        try:
            yield
        finally:
            self._last = time.perf_counter()
            self._timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            gap = 1000.0 * (now - self._last)
            self.gaps_ms.append(gap)
            if gap > 3 * self.interval_ms:
                self.long_gaps.append((now - self._start, gap))
        self._last = now

    def report(self) -> StallReport:
        gaps = sorted(self.gaps_ms)
        end = self._end or time.perf_counter()
        if not gaps:
            return StallReport(0.0, 0.0, 0, end - self._start)
        p99 = gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))]
        return StallReport(max(0.0, gaps[-1] - self.interval_ms), p99, len(gaps), end - self._start, list(self.gaps_ms))
