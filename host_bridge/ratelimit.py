"""Per-node rate limit for the ingest: one token bucket per node id (docs/security.md).

A node makes one record per window and drains a backlog at `batch.backfill_rps` (100 records/s
by default, ~2 batches/s of 64), one batch in flight, so an honest node stays far below
`rate` batches per second. A flooding node (a bug, a replay, a compromised board) gets its
`burst` and then `rate` per second; the rest is dropped before it is queued, counted
(`rate_limited`), and not acknowledged: an honest node that ever hits the limit only resends
later, nothing is lost. The other nodes keep their share of the ingest queue and worker.

The table of buckets is bounded (`max_keys`): idle buckets (full again) are forgotten, and
when it is still full a new key is refused, so a flood of invented node ids cannot grow it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

DEFAULT_RATE = 50.0  # batches per second per node
DEFAULT_BURST = 200.0
DEFAULT_MAX_KEYS = 10000


class RateLimiter:
    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        burst: float = DEFAULT_BURST,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate >= 0 (0: no limit), burst >= 1, max_keys >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last refill time]
        self.refused_keys = 0  # new keys refused because the table was full
        self._next_sweep = 0.0  # a full table is swept at most once per second (a sweep is O(n))

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def allow(self, key: str, cost: float = 1.0) -> bool:
        """Take `cost` tokens from key's bucket; False when it has not got them."""
        if not self.rate:
            return True
        now = self._clock()
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self.max_keys and not self._sweep(now):
                    self.refused_keys += 1
                    return False
                b = self._buckets[key] = [self.burst, now]
            else:
                b[0] = min(self.burst, b[0] + (now - b[1]) * self.rate)
                b[1] = now
            if b[0] >= cost:
                b[0] -= cost
                return True
            return False

    def _sweep(self, now: float) -> bool:
        """Forget buckets that have refilled (same as never seen); True if room was made."""
        if now < self._next_sweep:
            return False
        self._next_sweep = now + 1.0
        full_after = self.burst / self.rate
        idle = [k for k, (_, last) in self._buckets.items() if now - last >= full_after]
        for k in idle:
            del self._buckets[k]
        return len(self._buckets) < self.max_keys

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)
