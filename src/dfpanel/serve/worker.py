"""Background analysis for the web service: a bounded queue of jobs, one thread per worker that hands
each job to its analyser (`analysers.py`: a child process running `PanelDetector.analyse`, the code
`dfpanel detect` runs) and writes the report, and a cleaner that removes reports older than the
retention.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dfpanel.report.write import write_report
from dfpanel.serve.analysers import AnalysisFailed
from dfpanel.serve.jobs import Job, JobStore

log = logging.getLogger(__name__)


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; try again in {retry_after} s")
        self.retry_after = retry_after


class JobRunner:
    def __init__(self, store: JobStore, analysers: list, max_queue: int = 32,
                 keep_uploads: bool = False, retention_s: float | None = 7 * 86400):
        """`analysers`: one per worker (ProcessAnalyser or ThreadAnalyser)."""
        if not analysers or max_queue < 1:
            raise ValueError("at least one analyser, and max_queue at least 1")
        self.store, self.analysers = store, list(analysers)
        self.workers, self.max_queue = len(self.analysers), max_queue
        self.info: dict = {}  # what the first analyser says of its panel (names, fitted, training data)
        self.started = False
        self.keep_uploads, self.retention_s = keep_uploads, retention_s
        self._queue: collections.deque[str] = collections.deque()
        self._cond = threading.Condition()
        self._reserved = 0  # uploads arriving that already hold a place in the queue
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._durations: collections.deque[float] = collections.deque(maxlen=20)

    # ---- life --------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the models (DfpanelError, one line, if they cannot be), queue what the last run left
        (oldest first), start the workers and the cleaner."""
        if self.started:
            return
        # all at once: each analysis process spends its start-up loading the models
        with ThreadPoolExecutor(len(self.analysers)) as pool:
            self.info = list(pool.map(lambda a: a.start(), self.analysers))[0]
        self.started = True
        again = self.store.load()
        with self._cond:
            self._queue.extend(j.id for j in again)
        if again:
            log.info("serve: %d job(s) from before the restart queued again", len(again))
        self.clean()
        for i, analyser in enumerate(self.analysers):
            t = threading.Thread(target=self._loop, args=(analyser,), name=f"dfpanel-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        if self.retention_s:
            t = threading.Thread(target=self._clean_loop, name="dfpanel-cleaner", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking jobs; a job being analysed finishes (or, past the timeout, runs again at the next start)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        for a in self.analysers:
            a.stop()

    # ---- queue -------------------------------------------------------------------------------
    def reserve(self) -> None:
        """Hold a place for an upload about to arrive; QueueFull when there is none."""
        with self._cond:
            if len(self._queue) + self._reserved >= self.max_queue:
                raise QueueFull(self.retry_after())
            self._reserved += 1

    def release(self) -> None:
        with self._cond:
            self._reserved = max(0, self._reserved - 1)

    def submit(self, job: Job) -> None:
        """Queue a received job, in the place `reserve` held for it."""
        with self._cond:
            self._reserved = max(0, self._reserved - 1)
            self.store.update(job, status="queued", stage="queued", progress=0.0)
            self._queue.append(job.id)
            self._cond.notify()

    def position(self, job_id: str) -> int | None:
        """1 for the next job to start; None when not queued."""
        with self._cond:
            try:
                return self._queue.index(job_id) + 1
            except ValueError:
                return None

    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the recent mean job time, for the jobs ahead."""
        mean = sum(self._durations) / len(self._durations) if self._durations else 30.0
        ahead = (len(self._queue) + self._reserved + 1) / self.workers
        return int(min(3600, max(5, math.ceil(mean * ahead))))

    # ---- work --------------------------------------------------------------------------------
    def _loop(self, analyser) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait(1.0)
                if self._stop.is_set():
                    return
                job_id = self._queue.popleft()
            job = self.store.get(job_id)
            if job is None or job.status != "queued":  # deleted while it waited
                continue
            try:
                self.run(job, analyser)
            except Exception:  # the worker must live on: the job is marked failed, the log has the traceback
                log.exception("serve: job %s failed", job.id)
                self.store.fail(job, "internal error while analysing; the server's log has the details")

    def run(self, job: Job, analyser) -> None:
        """Analyse one job's upload, write its report into its folder, drop the upload."""
        t0 = time.time()
        self.store.update(job, status="running", stage="starting", progress=0.0, started=t0, attempts=job.attempts + 1)
        path = self.store.upload_path(job)

        def progress(stage: str, fraction: float) -> None:
            self.store.update(job, persist=False, stage=stage, progress=max(job.progress, float(fraction)))

        try:
            report, thumbnails = analyser.analyse(path, progress)
        except AnalysisFailed as exc:
            if self._stop.is_set():  # the service is stopping: the job runs again at the next start
                return
            self.store.fail(job, str(exc))
            if not self.keep_uploads:
                self.store.remove_upload(job)
            return
        report = redact(report, path, job.name)
        progress("writing the report", 0.97)
        folder = self.store.folder(job.id)
        if self.store.get(job.id) is None:  # deleted while it ran: keep nothing
            return
        # written outside the store's lock (rendering takes a while; status polls wait on that lock)
        try:
            write_report(report, folder, thumbnails)
            save_thumbnails(folder, thumbnails)
        except OSError as exc:
            write_error = f"the report could not be written ({exc.strerror or exc}); the server needs free disk space"
        else:
            write_error = None
        with self.store.lock:
            if self.store.get(job.id) is None:  # deleted while the report was written: remove what it left
                shutil.rmtree(folder, ignore_errors=True)
                return
            if not self.keep_uploads:
                self.store.remove_upload(job)
            if write_error is not None:
                self.store.fail(job, write_error)
                return
            err = report.get("error") or {}
            self.store.update(job, status="done", stage="done", progress=1.0, finished=time.time(), result={
                "status": report["status"], "verdict": report["verdict"],
                "probability": report["panel"]["probability"], "reason": err.get("message"),
            })
        self._durations.append(time.time() - t0)

    # ---- retention ---------------------------------------------------------------------------
    def clean(self, now: float | None = None) -> int:
        """Remove finished jobs older than the retention; returns how many."""
        if not self.retention_s:
            return 0
        gone = self.store.expired((now or time.time()) - self.retention_s)
        for job_id in gone:
            self.store.delete(job_id)
        if gone:
            log.info("serve: %d report(s) older than the retention removed", len(gone))
        return len(gone)

    def _clean_loop(self) -> None:
        every = min(600.0, max(1.0, self.retention_s / 10))
        while not self._stop.wait(every):
            try:
                self.clean()
            except Exception:
                log.exception("serve: the cleaner failed; it tries again in %.0f s", every)


def redact(report: dict, path: Path, name: str) -> dict:
    """The report as its owner should see it: the file's name where the server's paths were."""
    needles = sorted({str(path), str(path.parent), str(path.parent.parent)}, key=len, reverse=True)

    def clean(v):
        if isinstance(v, str):
            for n in needles:
                v = v.replace(n + "/", "").replace(n, name)
            return v
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    out = clean(report)
    out["video"]["path"] = name
    out["video"]["name"] = name
    return out


def save_thumbnails(folder: Path, thumbnails: list[dict]) -> None:
    """The face thumbnails beside the report, so the job page can show them again."""
    from dfpanel.atomic import atomic_write

    tdir = folder / "thumbnails"
    tdir.mkdir(exist_ok=True)
    index = []
    for i, t in enumerate(thumbnails):
        atomic_write(tdir / f"{i}.png", t["png"])
        index.append({k: v for k, v in t.items() if k != "png"} | {"file": f"{i}.png"})
    atomic_write(tdir / "index.json", json.dumps(index))


def load_thumbnails(folder: Path) -> list[dict]:
    tdir = folder / "thumbnails"
    try:
        index = json.loads((tdir / "index.json").read_text())
        return [dict(t, png=(tdir / t["file"]).read_bytes()) for t in index]
    except (OSError, ValueError, KeyError):
        return []
