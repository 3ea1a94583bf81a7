"""A manifest -> face-track cache: `run_extraction` runs `extract_video` (`dfpanel.extract.video`) over a
manifest with a process pool, resume (a video with a committed entry and an index row is skipped),
`--shard i/n` by a stable hash of the id, and per-video failures recorded with their reason instead of
stopping the run. Each video's tracks are committed atomically (`write_tracks`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from dfpanel.errors import ConfigError, DfpanelError
from dfpanel.extract.cache import (
    INDEX_FILE,
    CacheIndexRow,
    EntryWriter,
    append_index_row,
    record_cache_spec,
)
from dfpanel.extract.faces import FaceDetector
from dfpanel.extract.report import failure_key, update_report
from dfpanel.extract.video import ExtractConfig, extract_video, get_detector
from dfpanel.index.manifest import VideoRecord, iter_manifest

log = logging.getLogger(__name__)


# -- one video into the cache --------------------------------------------------------------------


def write_tracks(out: Path, tracks, record: VideoRecord) -> list[CacheIndexRow]:
    """Commit each track's entry; return index rows (the caller appends them, main track last)."""
    rows = []
    for meta, crops, audio in tracks:
        writer = EntryWriter(out, record.dataset, meta.video_id)
        try:
            for n, crop in enumerate(crops):
                writer.add_crop(n, crop)
            if audio is not None:
                writer.add_audio(audio, meta.audio.sample_rate)
            folder = writer.commit(meta)
        except BaseException:
            writer.abort()
            raise
        rows.append(
            CacheIndexRow(
                id=meta.video_id,
                dataset=record.dataset,
                dir=folder.relative_to(out).as_posix(),
                label=record.label,
                fake_type=record.fake_type,
                split=record.split,
                group=record.group,
                has_audio=meta.audio is not None,
                chunk=record.chunk,
                n_frames=len(meta.frames),
                n_clips=len({f.clip for f in meta.frames}),
                manipulations=list(record.manipulations),
                synthetic=record.synthetic,
            )
        )
    return rows


def process_record(record: VideoRecord, out: Path, cfg: ExtractConfig, detector: FaceDetector | None = None) -> dict:
    """Extract one manifest row into the cache. Never raises for a bad video: returns
    {"ok": bool, "rows": [...], "error": class name, "reason": one line, ...}."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = {"id": record.id, "dataset": record.dataset, "path": str(record.abspath), "ok": False, "rows": []}
    try:
        timings: dict = {}
        result["timings"] = timings
        tracks = extract_video(record.abspath, cfg, video_id=record.id, dataset=record.dataset, detector=detector, timings=timings)
        t = time.perf_counter()
        rows = write_tracks(out, tracks, record)
        timings["write"] = time.perf_counter() - t
        result.update(ok=True, rows=[asdict(r) for r in rows], frames=sum(len(m.frames) for m, _, _ in tracks))
    except DfpanelError as exc:
        result.update(error=type(exc).__name__, reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - a bad video must not stop the run; keep the trace in the log
        log.debug("%s failed:\n%s", record.abspath, traceback.format_exc())
        result.update(error=type(exc).__name__, reason=f"{record.abspath}: unexpected {type(exc).__name__}: {str(exc)[:200]}")
    result["seconds"] = time.perf_counter() - t0
    result["cpu_seconds"] = time.process_time() - c0  # this process's CPU: ~one core per worker
    return result


# -- whole manifest ------------------------------------------------------------------------------


def shard_of(video_id: str, n: int) -> int:
    """1-based shard of a video: a stable hash of its id (same on every machine and Python run)."""
    return int.from_bytes(hashlib.sha1(video_id.encode("utf-8")).digest()[:8], "big") % n + 1


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/n, e.g. 1/4") from None
    if not (n >= 1 and 1 <= i <= n):
        raise ConfigError(f"--shard {text!r}: need 1 <= i <= n")
    return i, n


def done_ids(out: Path) -> set[tuple[str, str]]:
    """(dataset, id) of videos with an index row whose entry is on disk."""
    index = out / INDEX_FILE
    if not index.is_file():
        return set()
    import json

    done = set()
    with open(index, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
                if (out / row["dir"] / "meta.json").is_file():
                    done.add((row["dataset"], row["id"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a torn last line from a killed run
    return done


def remove_stale_temp(out: Path, older_than_s: float = 3600.0) -> int:
    """Delete entry temp folders left by killed runs. Only old ones: another run sharing the cache
    may be writing a young one right now (an entry takes seconds to write)."""
    import shutil

    now, n = time.time(), 0
    for tmp in out.glob("*/.tmp-*"):
        try:
            if tmp.is_dir() and now - tmp.stat().st_mtime > older_than_s:
                shutil.rmtree(tmp, ignore_errors=True)
                n += 1
        except OSError:
            continue
    return n


def select_records(
    manifest_path: str | os.PathLike, shard: tuple[int, int] = (1, 1), splits: Sequence[str] | None = None
) -> list[VideoRecord]:
    i, n = shard
    rows = list(iter_manifest(manifest_path))
    if splits:
        rows = [r for r in rows if r.split in set(splits)]
    return [r for r in rows if n == 1 or shard_of(r.id, n) == i]


_worker_cfg: ExtractConfig | None = None


def _init_worker(cfg: ExtractConfig, log_level: int) -> None:
    global _worker_cfg
    import signal

    import cv2
    import torch

    # Ctrl-C is the parent's to handle: it stops handing out videos and records what finished;
    # a worker finishes (or its EntryWriter leaves no trace of) the video it holds.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    logging.basicConfig(level=log_level)
    _worker_cfg = cfg
    # Load once per worker, up front, and run it once: the first forward pass sets up kernels.
    get_detector(cfg).detect([np.zeros((96, 96, 3), np.uint8)])


def _work(record: VideoRecord, out: str) -> dict:
    assert _worker_cfg is not None
    return process_record(record, Path(out), _worker_cfg)


def run_extraction(
    manifest_path: str | os.PathLike,
    out: str | os.PathLike,
    cfg: ExtractConfig | None = None,
    workers: int = 1,
    shard: tuple[int, int] = (1, 1),
    strict: bool = False,
    progress: bool = True,
    splits: Sequence[str] | None = None,
) -> dict:
    """Extract a manifest (its shard, its splits) into the cache `out`; returns a summary dict
    (also folded into CACHE/extract_report.json). Videos already in the cache are skipped."""
    cfg = (cfg or ExtractConfig()).validate()
    _check_device(cfg.device)
    out = Path(out)
    records = select_records(manifest_path, shard, splits)
    out.mkdir(parents=True, exist_ok=True)
    record_cache_spec(out, cfg.spec)  # refuses a cache extracted with other settings
    remove_stale_temp(out)
    done = done_ids(out)
    todo = [r for r in records if (r.dataset, r.id) not in done]
    log.info("extract: %d video(s) selected (shard %d/%d), %d already in %s, %d to do with %d worker(s)",
             len(records), shard[0], shard[1], len(records) - len(todo), out, len(todo), workers)
    summary = {
        "manifest": str(manifest_path),
        "shard": f"{shard[0]}/{shard[1]}",
        "workers": workers,
        "selected": len(records),
        "skipped": len(records) - len(todo),
        "ok": 0,
        "failed": 0,
        "tracks": 0,
        "frames": 0,
        "video_cpu_seconds": 0.0,  # CPU spent on the videos, summed over workers
        "stage_seconds": {},  # wall seconds per stage (decode, audio, faces, crops, write), summed
        "failures": [],
    }
    run_key = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    t0 = time.perf_counter()
    pending_fail: dict[str, dict] = {}
    pending_ok: list[str] = []
    last_save = time.monotonic()

    def save() -> None:
        nonlocal pending_fail, pending_ok, last_save
        elapsed = time.perf_counter() - t0
        run = {k: v for k, v in summary.items() if k != "failures"}
        run.update(seconds=round(elapsed, 2), config=cfg.as_dict(), finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        update_report(out, failures=pending_fail, succeeded=pending_ok, run=run, run_key=run_key)
        pending_fail, pending_ok, last_save = {}, [], time.monotonic()

    def on_result(res: dict) -> None:
        key = failure_key(res["dataset"], res["id"])
        summary["video_cpu_seconds"] += res.get("cpu_seconds", 0.0)
        for stage, secs in res.get("timings", {}).items():
            summary["stage_seconds"][stage] = summary["stage_seconds"].get(stage, 0.0) + secs
        if res["ok"]:
            rows = res["rows"]
            for row in rows[1:] + rows[:1]:  # main track last: its row marks the video done
                append_index_row(out, CacheIndexRow(**row))
            summary["ok"] += 1
            summary["tracks"] += len(rows)
            summary["frames"] += res.get("frames", 0)
            pending_ok.append(key)
        else:
            summary["failed"] += 1
            fail = {"id": res["id"], "dataset": res["dataset"], "path": res["path"], "error": res["error"], "reason": res["reason"]}
            summary["failures"].append(fail)
            pending_fail[key] = fail
            log.warning("%s: %s", res["error"], res["reason"])
        if time.monotonic() - last_save > 30:
            save()

    pools = _WorkerPool(cfg, workers) if workers > 1 and len(todo) > 1 else None
    pool = pools.start() if pools else None
    try:
        with _progress(progress, len(todo)) as advance:
            if pools is None:
                for record in todo:
                    on_result(process_record(record, out, cfg))
                    advance(summary["failed"])
            else:
                _run_pool(todo, out, pools, pool, on_result, lambda: advance(summary["failed"]))
    finally:
        elapsed = time.perf_counter() - t0
        summary["seconds"] = round(elapsed, 3)
        summary["videos_per_s"] = round(len(todo) / elapsed, 3) if elapsed > 0 and todo else 0.0
        summary["frames_per_s"] = round(summary["frames"] / elapsed, 2) if elapsed > 0 else 0.0
        save()
    summary["report"] = str(out / "extract_report.json")
    summary["exit_code"] = 1 if strict and summary["failed"] else 0
    return summary


class _WorkerPool:
    """Makes process pools for extraction. Workers come from a fork server that imported torch,
    the detector and PyAV once (and never computed, so no OpenMP/CUDA state is inherited): a
    worker is ready in well under a second instead of re-importing torch (seconds). Plain fork is
    not safe once this process has run torch ops. Windows spawns. Each worker sets torch to one
    thread and loads its own detector once."""

    def __init__(self, cfg: ExtractConfig, workers: int):
        import multiprocessing as mp

        self.cfg, self.workers = replace(cfg, decode_threads=1), workers
        if "forkserver" in mp.get_all_start_methods():
            self.ctx = mp.get_context("forkserver")
            self.ctx.set_forkserver_preload(["torch", "facenet_pytorch", "cv2", "av", "dfpanel.extract.run", "dfpanel.extract.video"])
        else:
            self.ctx = mp.get_context("spawn")

    def start(self):
        """A pool whose workers are up (started here, before any progress-bar thread exists)."""
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=self.ctx, initializer=_init_worker,
            initargs=(self.cfg, logging.getLogger().level),
        )
        pool.submit(_ready).result()
        return pool


def _ready() -> bool:
    return True


def _run_pool(todo, out, pools: _WorkerPool, pool, on_result, advance) -> None:
    """Run `todo` on the pool with a bounded queue; a crashed worker (segfault in a codec, OOM kill)
    fails only the videos it had in flight, and the pool is rebuilt."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    queue = list(reversed(todo))
    while queue:
        pool = pool or pools.start()
        inflight: dict = {}
        broken = False
        try:
            while queue or inflight:
                while queue and len(inflight) < pools.workers * 2 and not broken:
                    rec = queue.pop()
                    inflight[pool.submit(_work, rec, str(out))] = rec
                if not inflight:
                    break
                finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for fut in finished:
                    rec = inflight.pop(fut)
                    try:
                        res = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        res = {"id": rec.id, "dataset": rec.dataset, "path": str(rec.abspath), "ok": False, "rows": [],
                               "error": "WorkerCrash", "reason": f"{rec.abspath}: the worker process died while extracting it (codec crash or out of memory)"}
                    on_result(res)
                    advance()
                if broken and not inflight:
                    break
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        pool = None


def _check_device(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available here; use --device cpu")
    elif device != "cpu" and not device.startswith("mps"):
        raise ConfigError(f"--device {device!r}: expected cpu or cuda[:N]")


class _progress:
    """Rich progress bar with videos/s and ETA (or nothing when progress=False)."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled and total > 0, total
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda *a: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]extract[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} videos/s"),
            TextColumn("[red]{task.fields[failed]} failed[/]"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.bar.__enter__()
        self.task = self.bar.add_task("extract", total=self.total, rate="-", failed=0)
        self.t0 = time.perf_counter()
        self.n = 0

        def advance(failed: int = 0) -> None:
            self.n += 1
            rate = self.n / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.update(self.task, advance=1, rate=f"{rate:.2f}", failed=failed)

        return advance

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False
