"""The rollout's bookkeeping: the app hosts cut into batches, and one event per batch that the
hosts of the next batch wait on (pyinfra runs each operation on every host at once, one greenlet
per host). Pure: no host is touched here."""

from __future__ import annotations

import math
import time

import gevent.event

from tasks.remote import DeployError


def batch_plan(hosts: list[str], batch: str, canary: int) -> list[list[str]]:
    """Cut HOSTS (in order) into batches: CANARY hosts first, then BATCH at a time, where
    BATCH is a count ("2") or a share of all the hosts ("25%", rounded up)."""
    if batch.endswith("%"):
        size = max(1, math.ceil(len(hosts) * int(batch[:-1]) / 100))
    else:
        size = int(batch)
    if size < 1:
        raise ValueError(f"a batch needs at least one host, got {batch!r}")
    batches = [hosts[:canary]] if canary > 0 and hosts else []
    rest = hosts[canary:] if canary > 0 else list(hosts)
    batches += [rest[i : i + size] for i in range(0, len(rest), size)]
    return batches


class Rollout:
    """One run's batches and what happened to them, shared by every host's callback."""

    def __init__(
        self,
        batches: list[list[str]],
        max_fail: int,
        bound: float,
        unreachable: list[str] | None = None,
    ) -> None:
        self.batches = batches
        self.max_fail = max_fail
        self.bound = bound  # seconds any one wait may take
        self.batch_of = {name: i for i, names in enumerate(batches) for name in names}
        self.ended = [gevent.event.Event() for _ in batches]
        self.left = [len(names) for names in batches]
        self.failed: list[str] = list(unreachable or [])  # count against max_fail from the start
        self.switched: list[str] = []
        self.ended_at: list[float | None] = [None] * len(batches)  # when each batch ended
        self.stopped_at: int | None = None
        # the canary analysis: the last canary host to be back in service judges, the others
        # wait for its verdict (a summary of what was worse, or None when the canary passed)
        self.judged = gevent.event.Event()
        self.rejection: str | None = None
        self._canary_left = len(batches[0]) if batches else 0
        self._canary_ok = True

    def label(self, index: int) -> str:
        canary = " (canary)" if index == 0 and len(self.batches) > 1 else ""
        names = ", ".join(self.batches[index])
        return f"batch {index + 1}/{len(self.batches)}{canary} [{names}]"

    def wait(self, index: int) -> None:
        """Wait until batch INDEX has ended."""
        limit = self.bound * (index + 1)
        if not self.ended[index].wait(timeout=limit):
            raise DeployError(f"{self.label(index)} did not end within {limit:.0f}s")

    def canary_back(self, ok: bool) -> bool:
        """A canary host is back in service (OK: its switch went well). True for the last one
        when every canary host went well: it runs the analysis and calls judged.set()."""
        self._canary_left -= 1
        self._canary_ok = self._canary_ok and ok
        last = self._canary_left == 0
        if last and not self._canary_ok:
            self.judged.set()  # the batch failed anyway: nothing to judge
        return last and self._canary_ok

    def reject(self, summary: str) -> None:
        """The analysis found the canary worse: the rollout stops after the canary batch,
        whatever rollout_max_fail allows."""
        self.rejection = summary
        self.judged.set()

    def finish(self, name: str, ok: bool) -> None:
        """One host of its batch is done; the last one ends the batch (and maybe the rollout)."""
        index = self.batch_of[name]
        if not ok:
            self.failed.append(name)
        self.left[index] -= 1
        if self.left[index] == 0:
            worse = self.rejection is not None and index == 0
            if self.stopped_at is None and (len(self.failed) > self.max_fail or worse):
                self.stopped_at = index
            self.ended_at[index] = time.time()
            self.ended[index].set()
