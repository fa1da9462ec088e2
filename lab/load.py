"""Open-loop load against a lab host with k6, for the availability tests and benchmarks.

The figures come from k6's own summary: requests made, requests failed (k6's
`http_req_failed`), iterations k6 dropped, requests due at the asked rate over k6's own run and
neither sent nor dropped (the last two counted as failed: `unserved`), latency p99 and max, and
answers from a release that must serve no one.
Only the lab's own addresses are targets.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from lab.topology import SUBNET
from tasks.loadtest import k6_binary

SCRIPT = Path(__file__).resolve().parent / "k6" / "availability.js"
TAIL = 3.0  # seconds of load kept after the operation under test when k6 is stopped early


@dataclass
class LoadResult:
    requests: int
    failed: int
    dropped: int  # iterations k6 could not start (every worker busy): failures too
    p99_ms: float
    max_ms: float
    forbidden_answers: int
    exit_code: int
    rate: int  # requests/s asked of k6
    seconds: float  # how long k6 sent them (its own count over its own rate)

    @property
    def unsent(self) -> int:
        """Requests that were due in k6's run and neither sent nor dropped, beyond those a stop
        finds in flight (at most one per max_ms of each second's RATE, plus one): 0 when k6 kept
        the pace the whole time."""
        due = int(self.rate * self.seconds)
        in_flight = int(self.rate * self.max_ms / 1000) + 1
        return max(0, due - in_flight - self.requests - self.dropped)

    @property
    def unserved(self) -> int:
        """Requests that failed or were never sent (k6 dropped them because every worker was
        stuck waiting, or fell behind the pace): what an availability test holds at 0."""
        return self.failed + self.dropped + self.unsent

    def __str__(self) -> str:
        return (
            f"{self.failed} failed of {self.requests} requests, {self.dropped} dropped, "
            f"{self.unsent} due and not sent, "
            f"p99 {self.p99_ms:.1f} ms, max {self.max_ms:.1f} ms, "
            f"{self.forbidden_answers} answers from the forbidden release, "
            f"{self.seconds:.1f} s at {self.rate}/s"
        )


def check_target(base_url: str) -> None:
    """Refuse any address that is not one of the lab's own hosts."""
    address = ipaddress.ip_address(urlparse(base_url).hostname or "")
    if address not in SUBNET:
        raise ValueError(f"{base_url}: load goes only to the lab's hosts ({SUBNET})")


class Load:
    """k6 running in the background: `with Load(url, 100, "30s") as load: ...; load.result()`.

    DURATION bounds the load; `result(stop_early=True)` ends it TAIL seconds after the operation
    under test instead of at the end of DURATION."""

    def __init__(
        self, base_url: str, rate: int, duration: str, forbidden: str = "", samples: bool = False
    ) -> None:
        check_target(base_url)
        self._dir = tempfile.TemporaryDirectory(prefix="mdd-load-")
        self._summary = Path(self._dir.name) / "summary.json"
        self._samples = Path(self._dir.name) / "samples.csv" if samples else None
        self._cmd = [
            k6_binary(),
            "run",
            "--quiet",
            "--no-color",
            f"--summary-export={self._summary}",
            *(["--out", f"csv={self._samples}"] if self._samples else []),
            "-e",
            f"BASE_URL={base_url}",
            "-e",
            f"RATE={rate}",
            "-e",
            f"DURATION={duration}",
            "-e",
            f"FORBIDDEN={forbidden}",
            str(SCRIPT),
        ]
        self._rate = rate
        self._timeout = _seconds(duration) + 60
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> Load:
        env = {**os.environ, "K6_CSV_TIME_FORMAT": "unix_milli"}
        self._proc = subprocess.Popen(
            self._cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        return self

    def __exit__(self, *exc) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._dir.cleanup()

    def _requests(self) -> list[tuple[float, float, int]]:
        """(time.time() the request ended, its milliseconds, its HTTP status; 0: no answer) of
        each request k6 made; only with SAMPLES, after result()."""
        assert self._samples is not None, "Load(..., samples=True) keeps each request"
        with self._samples.open() as f:
            return [
                (int(row["timestamp"]) / 1000, float(row["metric_value"]), int(row["status"] or 0))
                for row in csv.DictReader(f)
                if row["metric_name"] == "http_req_duration"
            ]

    def durations(self, start: float, end: float) -> list[float]:
        """Milliseconds of each request that ended between START and END (time.time()); only
        with SAMPLES, after result()."""
        return [took for ended, took, _ in self._requests() if start <= ended <= end]

    def timed_answers(self) -> list[tuple[float, int]]:
        """(time.time() the request was sent at the latest, HTTP status; 0: no answer) of each
        request, in order; only with SAMPLES, after result()."""
        return sorted(
            (ended - took / 1000 - 0.001, status) for ended, took, status in self._requests()
        )

    def answers(self, start: float, end: float) -> list[int]:
        """HTTP status of each request surely sent between START and END (time.time()); only
        with SAMPLES, after result()."""
        return [status for sent, status in self.timed_answers() if start <= sent <= end]

    def result(self, stop_early: bool = False) -> LoadResult:
        """Wait for k6 to finish (bounded) and read its summary. STOP_EARLY: after TAIL more
        seconds, interrupt k6, which stops sending and still writes its summary (the requests in
        flight at that moment are counted neither as made nor as failed)."""
        assert self._proc is not None
        if stop_early and self._proc.poll() is None:
            time.sleep(TAIL)
            self._proc.send_signal(signal.SIGINT)
        try:
            _, err = self._proc.communicate(timeout=self._timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            raise RuntimeError(f"k6 ran past {self._timeout} s") from None
        if not self._summary.exists():
            raise RuntimeError(f"k6 wrote no summary (exit {self._proc.returncode}): {err[-800:]}")
        metrics = json.loads(self._summary.read_text())["metrics"]
        requests = metrics["http_reqs"]
        return LoadResult(
            rate=self._rate,
            seconds=requests["count"] / requests["rate"] if requests["rate"] else 0.0,
            requests=int(requests["count"]),
            failed=int(metrics["http_req_failed"]["passes"]),
            dropped=int(metrics.get("dropped_iterations", {}).get("count", 0)),
            p99_ms=float(metrics["http_req_duration"]["p(99)"]),
            max_ms=float(metrics["http_req_duration"]["max"]),
            forbidden_answers=int(metrics["forbidden_version_answers"]["count"]),
            exit_code=self._proc.returncode,
        )


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(duration[:-1]) * units[duration[-1]]
