"""The web service's jobs, kept on disk so that a restart loses none.

DATA_DIR/jobs/<id>/ holds `job.json` (the job's state, rewritten atomically at each change),
`upload/<name>` (the video, until it is analysed), and once done `report.json`, `report.html` and
`thumbnails/`. A job's id is its only handle: 144 random bits, so knowing one is the permission to see
it (a job made from a browser is also tied to that browser's visitor cookie, see `Job.owner`).

States: `receiving` (the upload is arriving; such a folder found at start-up is a dead upload and is
removed), `queued`, `running`, `done` (a report exists: analysed, or "not analysed" with the reason),
`failed` (no report could be written). At start-up `queued` and `running` jobs are queued again.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from dfpanel.atomic import atomic_write

log = logging.getLogger(__name__)

ID_BYTES = 18  # 144 bits -> 24 url-safe characters (no padding)
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{24}$")
ACTIVE = ("queued", "running")
# A job whose analysis was interrupted this often (the server died each time) is not tried again: the
# video itself may be what kills it.
MAX_ATTEMPTS = 3


@dataclass
class Job:
    id: str
    name: str  # the uploaded file's name, made safe; what its owner sees (never a server path)
    owner: str | None = None  # hash of the visitor cookie that made it; None: made without one (an API client)
    client: str | None = None  # hash of who sent it (the visitor cookie, else the address): for the per-client cap
    status: str = "receiving"
    stage: str = "receiving the upload"
    progress: float = 0.0
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    size_bytes: int = 0
    attempts: int = 0
    error: str | None = None  # why it failed, one line
    result: dict | None = None  # when done: report status, verdict, probability, reason

    @classmethod
    def from_dict(cls, d: dict) -> Job:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def public(self, queue_position: int | None = None) -> dict:
        """What the API says of a job (no owner, no paths)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("owner", "client", "attempts")}
        for k in ("created", "started", "finished"):
            out[k] = _iso(out[k])
        out["progress"] = round(float(self.progress), 3)
        out["queue_position"] = queue_position
        return out


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def new_job_id() -> str:
    return secrets.token_urlsafe(ID_BYTES)


class JobStore:
    """Every job of one data dir, in memory and on disk; thread-safe (`lock` also guards writes into a
    job's folder, so a delete never races a report being written)."""

    def __init__(self, data_dir: str | Path):
        self.root = Path(data_dir) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self._jobs: dict[str, Job] = {}

    # ---- start-up ----------------------------------------------------------------------------
    def load(self) -> list[Job]:
        """Read every job on disk; returns the ones to run (queued or interrupted), oldest first."""
        todo = []
        with self.lock:
            for folder in sorted(self.root.iterdir()):
                if not folder.is_dir() or not JOB_ID.match(folder.name):
                    continue
                try:
                    job = Job.from_dict(json.loads((folder / "job.json").read_text()))
                except (OSError, ValueError, TypeError) as exc:
                    # no state: a crash between creating the folder and its first write
                    log.warning("removing %s: unreadable job state (%s)", folder.name, exc)
                    shutil.rmtree(folder, ignore_errors=True)
                    continue
                if job.status == "receiving":  # the upload never finished
                    shutil.rmtree(folder, ignore_errors=True)
                    continue
                self._jobs[job.id] = job
                if job.status in ACTIVE:
                    if job.attempts >= MAX_ATTEMPTS:
                        self.fail(job, f"analysis was interrupted {job.attempts} times; this video is not tried again")
                        self.remove_upload(job)
                    elif not self.upload_path(job).is_file():
                        self.fail(job, "the upload was lost before it was analysed; upload it again")
                    else:
                        self.update(job, status="queued", stage="queued (again, after a restart)", progress=0.0)
                        todo.append(job)
        return sorted(todo, key=lambda j: j.created)

    # ---- one job -----------------------------------------------------------------------------
    def new(self, name: str, owner: str | None, client: str | None = None) -> Job:
        with self.lock:
            job = Job(id=new_job_id(), name=name, owner=owner, client=client)
            (self.folder(job.id) / "upload").mkdir(parents=True)
            self._jobs[job.id] = job
            self._save(job)
            return job

    def get(self, job_id: str) -> Job | None:
        if not JOB_ID.match(job_id or ""):
            return None
        with self.lock:
            return self._jobs.get(job_id)

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    def upload_path(self, job: Job) -> Path:
        return self.folder(job.id) / "upload" / job.name

    def update(self, job: Job, persist: bool = True, **changes) -> None:
        with self.lock:
            for k, v in changes.items():
                setattr(job, k, v)
            if persist and job.id in self._jobs:
                self._save(job)

    def fail(self, job: Job, error: str) -> None:
        """The job ended without a report; `error` says why in one line."""
        self.update(job, status="failed", stage="failed", finished=time.time(), error=error)

    def _save(self, job: Job) -> None:
        atomic_write(self.folder(job.id) / "job.json", json.dumps(asdict(job)))

    def delete(self, job_id: str) -> bool:
        """Forget a job and remove its folder (upload, report, thumbnails)."""
        with self.lock:
            job = self._jobs.pop(job_id, None)
            if job is None:
                return False
            shutil.rmtree(self.folder(job_id), ignore_errors=True)
            return True

    def remove_upload(self, job: Job) -> None:
        shutil.rmtree(self.folder(job.id) / "upload", ignore_errors=True)

    # ---- many --------------------------------------------------------------------------------
    def owned_by(self, owner: str | None) -> list[Job]:
        """The jobs one visitor made, newest first (none for a visitor without a cookie)."""
        if not owner:
            return []
        with self.lock:
            mine = [j for j in self._jobs.values() if j.owner == owner and j.status != "receiving"]
        return sorted(mine, key=lambda j: j.created, reverse=True)

    def expired(self, before: float) -> list[str]:
        """Ids of finished jobs that finished before `before` (running and queued jobs never expire)."""
        with self.lock:
            return [j.id for j in self._jobs.values()
                    if j.status in ("done", "failed") and (j.finished or j.created) < before]

    def active_for(self, client: str) -> int:
        """Jobs of one client still arriving, waiting or being analysed."""
        with self.lock:
            return sum(1 for j in self._jobs.values() if j.client == client and j.status in ("receiving", *ACTIVE))

    def count(self, *statuses: str) -> int:
        with self.lock:
            return sum(1 for j in self._jobs.values() if j.status in statuses)
