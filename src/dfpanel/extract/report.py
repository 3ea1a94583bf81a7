"""CACHE/extract_report.json: which videos failed and why, and what each run did.

Several runs (shards on one machine, or a re-run) may share a cache, so the report is updated, not
overwritten: under a file lock, read it, fold in this run's outcome, write it atomically.
A video that later succeeds drops out of `failures`.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from dfpanel.atomic import atomic_write
from dfpanel.extract.cache import REPORT_FILE

REPORT_VERSION = 1


def empty_report() -> dict:
    return {"version": REPORT_VERSION, "failures": {}, "runs": []}


def read_report(cache_root: str | os.PathLike) -> dict:
    path = Path(cache_root) / REPORT_FILE
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return empty_report()
    if not isinstance(data, dict):
        return empty_report()
    data.setdefault("failures", {})
    data.setdefault("runs", [])
    return data


def failure_key(dataset: str, video_id: str) -> str:
    return f"{dataset}/{video_id}"


@contextmanager
def _locked(cache_root: Path):
    lock_path = cache_root / (REPORT_FILE + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # Windows: a single writer is the common case there
            pass
        yield
    finally:
        os.close(fd)


def update_report(
    cache_root: str | os.PathLike,
    failures: dict[str, dict] | None = None,
    succeeded: list[str] | None = None,
    run: dict | None = None,
    run_key: str | None = None,
) -> dict:
    """Fold failures (key -> record), successes (keys) and a run summary into the report.
    A run with the same `run_key` as an earlier entry replaces it (progress saves mid-run)."""
    root = Path(cache_root)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        report = read_report(root)
        for key in succeeded or []:
            report["failures"].pop(key, None)
        report["failures"].update(failures or {})
        if run is not None:
            run = dict(run, key=run_key)
            runs = [r for r in report["runs"] if run_key is None or r.get("key") != run_key]
            report["runs"] = runs + [run]
        report["n_failed"] = len(report["failures"])
        atomic_write(root / REPORT_FILE, json.dumps(report, indent=1))
    return report


def merge_reports(reports: list[dict], succeeded: set[str]) -> dict:
    """Union of several caches' reports; a failure that succeeded in any cache is dropped."""
    out = empty_report()
    for r in reports:
        out["failures"].update(r.get("failures", {}))
        out["runs"].extend(r.get("runs", []))
    for key in succeeded:
        out["failures"].pop(key, None)
    out["n_failed"] = len(out["failures"])
    return out
