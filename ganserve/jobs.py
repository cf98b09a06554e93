"""Long work (a projection: seconds to minutes) as jobs beside the request batch, never inside it.

A request that runs as a job is answered at once with its id (HTTP 202); a runner thread in some worker of the same
model takes it from the store, runs it with progress, and stores the finished response; polling the id answers 202
with progress until then, and the stored response after. Cancelling stops it at its next step.

The store is a folder per model (``$GANSERVE_JOBS``, else the user cache), shared by every worker process on the
machine: one job directory each (``state.json``, ``request.json``, the result), writes atomic, and every change under
one lock file (``fcntl.flock``) so counts hold across processes. It is bounded: at most ``max_pending`` jobs queued or
running (a submit beyond answers 429 with Retry-After), at most ``max_kept`` finished ones, none older than
``max_age_s`` (oldest out first). A job whose runner process has died is reported failed, never left running.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ganserve.checkpoint import atomic_write_bytes

ID = re.compile(r"j:[0-9a-f]{16}", re.ASCII)
PENDING, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
PROGRESS_EVERY_S = 0.2  # a 1,000-step projection writes its state a few times a second, not at every step


def root() -> Path:
    if os.environ.get("GANSERVE_JOBS"):
        return Path(os.environ["GANSERVE_JOBS"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ganserve" / "jobs"


@dataclass(frozen=True)
class JobLimits:
    max_pending: int = 8  # queued + running, for one model on the machine
    max_kept: int = 64  # finished jobs whose results can still be fetched
    max_age_s: float = 3600.0  # finished jobs are evicted after this long
    poll_s: float = 0.25  # how often an idle runner looks for queued jobs

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> JobLimits:
        """Limits from GANSERVE_JOBS_MAX_PENDING / _MAX_KEPT / _MAX_AGE_S (what the operator set), else defaults."""
        env = os.environ if environ is None else environ
        names = {"max_pending": int, "max_kept": int, "max_age_s": float}
        given = {
            k: t(env[f"GANSERVE_JOBS_{k.upper()}"]) for k, t in names.items() if f"GANSERVE_JOBS_{k.upper()}" in env
        }
        return cls(**given)


@dataclass
class JobState:
    id: str
    state: str = PENDING
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    step: int = 0
    steps: int = 0
    pid: int | None = None  # the process running it
    error: dict[str, Any] | None = None  # {"status", "field", "message"} of a failed job

    def public(self) -> dict[str, Any]:
        out = {"job": self.id, "status": self.state}
        if self.steps:
            out["progress"] = {"step": self.step, "steps": self.steps}
        if self.error:
            out.update({k: v for k, v in self.error.items() if k != "status"})
        return out


@dataclass
class StoredResponse:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


class JobQueueFull(RuntimeError):
    def __init__(self, pending: int, retry_after: int) -> None:
        self.pending, self.retry_after = pending, retry_after
        super().__init__(f"{pending} jobs are queued or running for this model, the most it takes: try again later")


class UnknownJob(LookupError):
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(
            f"unknown job '{job_id[:40]}' on this server (finished jobs are kept for a while, then evicted)"
        )


class JobCancelled(Exception):
    pass


# The progress hook of the job running in this thread: long work reports (step, steps) through it and is cancelled
# by the exception it raises. Outside a job it is None and long work runs inline (the CLI, the Python API).
_progress: contextvars.ContextVar[Callable[[int, int], None] | None] = contextvars.ContextVar("progress", default=None)


def progress_hook() -> Callable[[int, int], None] | None:
    return _progress.get()


@contextlib.contextmanager
def reporting(hook: Callable[[int, int], None]) -> Iterator[None]:
    token = _progress.set(hook)
    try:
        yield
    finally:
        _progress.reset(token)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobStore:
    """The jobs of one model, on disk, shared by every process that opens the same folder."""

    def __init__(self, folder: str | os.PathLike, limits: JobLimits | None = None) -> None:
        self.folder = Path(folder)
        self.limits = limits or JobLimits()
        self._written: dict[str, float] = {}  # job id -> when its progress was last written (this process)

    # ---- locking and files ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.folder / ".lock", "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _dir(self, job_id: str) -> Path:
        if not ID.fullmatch(job_id):
            raise UnknownJob(job_id)
        return self.folder / job_id[2:]

    def _read(self, job_id: str) -> JobState:
        try:
            data = json.loads((self._dir(job_id) / "state.json").read_text())
        except (OSError, ValueError):
            raise UnknownJob(job_id) from None
        return JobState(**data)

    def _write(self, job: JobState) -> None:
        atomic_write_bytes(self._dir(job.id) / "state.json", json.dumps(asdict(job)).encode())

    def _all(self) -> list[JobState]:
        jobs = []
        for d in self.folder.iterdir() if self.folder.is_dir() else []:
            if d.is_dir():
                with contextlib.suppress(UnknownJob):
                    jobs.append(self._read(f"j:{d.name}"))
        return sorted(jobs, key=lambda j: j.created)

    def _settle(self, job: JobState) -> JobState:
        """A running job whose process is gone failed (its worker was restarted or killed)."""
        if job.state == RUNNING and not _alive(job.pid):
            job.state, job.finished = FAILED, time.time()
            job.error = {"status": 500, "field": "", "message": "the worker running this job stopped; submit it again"}
            self._write(job)
        return job

    def _evict(self, now: float) -> None:
        done = [j for j in self._all() if j.state in FINISHED]
        old = [j for j in done if now - (j.finished or j.created) > self.limits.max_age_s]
        surplus = [j for j in done if j not in old][: max(0, len(done) - len(old) - self.limits.max_kept)]
        for j in old + surplus:
            shutil.rmtree(self._dir(j.id), ignore_errors=True)

    # ---- the API -------------------------------------------------------------------------------------------------
    def submit(self, request: dict[str, Any], steps: int = 0) -> JobState:
        """Queue ``request``; JobQueueFull when max_pending jobs are already queued or running."""
        with self._locked():
            now = time.time()
            self._evict(now)
            pending = [self._settle(j) for j in self._all() if j.state in (PENDING, RUNNING)]
            pending = [j for j in pending if j.state in (PENDING, RUNNING)]
            if len(pending) >= self.limits.max_pending:
                raise JobQueueFull(len(pending), retry_after=max(1, int(self._eta(pending, now))))
            job = JobState(id="j:" + secrets.token_hex(8), steps=steps)
            d = self._dir(job.id)
            d.mkdir(mode=0o700)
            atomic_write_bytes(d / "request.json", json.dumps(request).encode())
            self._write(job)
            return job

    @staticmethod
    def _eta(pending: list[JobState], now: float) -> float:
        """Seconds until a slot is likely free: the running job furthest along, extrapolated."""
        rates = [(j.step / (now - j.started), j.steps - j.step) for j in pending if j.started and j.step and j.steps]
        return min((left / rate for rate, left in rates), default=5.0)

    def status(self, job_id: str) -> JobState:
        with self._locked():
            return self._settle(self._read(job_id))

    def position(self, job: JobState) -> int:
        """How many jobs are queued before ``job``."""
        return sum(j.created < job.created and j.state == PENDING for j in self._all())

    def request(self, job_id: str) -> dict[str, Any]:
        return json.loads((self._dir(job_id) / "request.json").read_text())

    def result(self, job_id: str) -> StoredResponse:
        d = self._dir(job_id)
        meta = json.loads((d / "result.json").read_text())
        return StoredResponse(meta["status"], (d / "result.bin").read_bytes(), meta["content_type"], meta["headers"])

    def cancel(self, job_id: str) -> JobState:
        """Cancel a queued job now, a running one at its next step; a finished job is left as it is."""
        with self._locked():
            job = self._settle(self._read(job_id))
            if job.state == PENDING:
                job.state, job.finished = CANCELLED, time.time()
                self._write(job)
            elif job.state == RUNNING:
                (self._dir(job_id) / "cancel").touch()
            return job

    def claim(self) -> JobState | None:
        """The oldest queued job, now marked running in this process; None when none is queued."""
        with self._locked():
            for job in self._all():
                if job.state == PENDING:
                    job.state, job.started, job.pid = RUNNING, time.time(), os.getpid()
                    self._write(job)
                    return job
        return None

    def progress(self, job: JobState, step: int, steps: int) -> None:
        """Record progress (written at most every PROGRESS_EVERY_S, and at the last step); raises JobCancelled when
        the job was cancelled meanwhile (checked at every step)."""
        if (self._dir(job.id) / "cancel").exists():
            raise JobCancelled(job.id)
        job.step, job.steps = step, steps
        now = time.monotonic()
        if step < steps and now - self._written.get(job.id, 0.0) < PROGRESS_EVERY_S:
            return
        self._written[job.id] = now
        with self._locked():
            self._write(job)

    def finish(self, job: JobState, response: StoredResponse | None, state: str = DONE,
               error: dict[str, Any] | None = None) -> None:  # fmt: skip
        d = self._dir(job.id)
        if response is not None:
            atomic_write_bytes(d / "result.bin", response.body)
            meta = {"status": response.status, "content_type": response.content_type, "headers": response.headers}
            atomic_write_bytes(d / "result.json", json.dumps(meta).encode())
        job.state, job.finished, job.error = state, time.time(), error
        self._written.pop(job.id, None)
        with self._locked():
            self._write(job)
            self._evict(time.time())


class JobRunner:
    """One thread that runs this process's share of a store's jobs, one at a time.

    ``run(request, hook)`` does the work and returns the response to store; ``hook(step, steps)`` is what the long
    work reports progress through (and what raises JobCancelled). ``fail(exc)`` turns an exception into the error
    a poll answers with: {"status", "field", "message"}.
    """

    def __init__(
        self,
        store: JobStore,
        run: Callable[[dict[str, Any], Callable[[int, int], None]], StoredResponse],
        fail: Callable[[BaseException], dict[str, Any]],
    ) -> None:
        self.store, self._run, self._fail = store, run, fail
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> JobRunner:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ganserve-jobs", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            job = None
            with contextlib.suppress(OSError):
                job = self.store.claim()
            if job is None:
                self._wake.wait(self.store.limits.poll_s)
                self._wake.clear()
                continue
            self.run_one(job)

    def run_one(self, job: JobState) -> None:
        def hook(step: int, steps: int) -> None:
            self.store.progress(job, step, steps)

        try:
            response = self._run(self.store.request(job.id), hook)
        except JobCancelled:
            self.store.finish(job, None, CANCELLED)
        except Exception as e:  # every failure is the job's answer, never the runner's end
            self.store.finish(job, None, FAILED, self._fail(e))
        else:
            self.store.finish(job, response)
