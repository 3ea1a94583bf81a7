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
    TMP_PREFIX,
    CacheFullError,
    CacheIndexRow,
    EntryWriter,
    append_index_row,
    disk_full_message,
    is_disk_full,
    record_cache_spec,
    temp_entry_owner_alive,
)
from dfpanel.extract.compact import pack_track
from dfpanel.extract.faces import FaceDetector
from dfpanel.extract.report import REPORT_FILE, failure_key, update_report
from dfpanel.extract.spec import InputSpec
from dfpanel.extract.video import ExtractConfig, extract_video, get_detector
from dfpanel.index.manifest import VideoRecord, iter_manifest

log = logging.getLogger(__name__)


# -- one video into the cache --------------------------------------------------------------------


def write_tracks(out: Path, tracks, record: VideoRecord) -> list[CacheIndexRow]:
    """Commit each track's entry; return index rows (the caller appends them, main track last)."""
    rows = []
    for meta, crops, audio in tracks:
        spec = InputSpec.from_dict(meta.input_spec) if meta.input_spec is not None else None
        files = None
        if spec is not None and spec.store == "compact":
            meta, files = pack_track(meta, crops, spec)
        writer = EntryWriter(out, record.dataset, meta.video_id)
        try:
            if files is not None:
                for rel, data in files.items():
                    writer.add_file(rel, data)
            else:
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
        try:
            rows = write_tracks(out, tracks, record)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            # Not this video's fault: the run must stop (and the video stay to do), not record a failure.
            result.update(error="DiskFull", disk_full=True, reason=disk_full_message(out, f"the entry of {record.id}"))
            return result
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
    """Delete entry temp folders left by killed runs: those whose owning process (named in the
    folder's name, `EntryWriter`) is gone, whatever their age; never one whose owner is alive (a
    concurrent run writing it right now). A folder whose owner cannot be checked (another host
    sharing the cache, or an older dfpanel's name) is removed only once older than `older_than_s`."""
    import shutil

    now, n = time.time(), 0
    for tmp in out.glob(f"*/{TMP_PREFIX}*"):
        try:
            if not tmp.is_dir():
                continue
            alive = temp_entry_owner_alive(tmp.name)
            if alive is False or (alive is None and now - tmp.stat().st_mtime > older_than_s):
                shutil.rmtree(tmp, ignore_errors=True)
                n += 1
        except OSError:
            continue
    if n:
        log.info("%s: removed %d temp entry folder(s) left by killed runs", out, n)
    return n


def select_records(
    manifest_path: str | os.PathLike, shard: tuple[int, int] = (1, 1), splits: Sequence[str] | None = None
) -> list[VideoRecord]:
    i, n = shard
    rows = list(iter_manifest(manifest_path))
    if splits:
        rows = [r for r in rows if r.split in set(splits)]
    return [r for r in rows if n == 1 or shard_of(r.id, n) == i]


class Interrupted(KeyboardInterrupt):
    """SIGTERM (what `timeout`, systemd and job schedulers send) stops a run as Ctrl-C does: the
    parent stops handing out videos, records what finished, and the command exits 143 (128 + 15)."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signum)
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum


class _stop_on_sigterm:
    """While a run is on (in the main thread): SIGTERM raises Interrupted, once; later ones are ignored
    while the run records what finished. The previous handler comes back afterwards."""

    def __enter__(self):
        import signal
        import threading

        self.previous = None
        if threading.current_thread() is not threading.main_thread():
            return self
        fired = []

        def handler(signum, frame):
            if not fired:
                fired.append(signum)
                raise Interrupted(signum)

        self.previous = signal.signal(signal.SIGTERM, handler)
        return self

    def __exit__(self, *exc):
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


_worker_cfg: ExtractConfig | None = None
_worker_detector: FaceDetector | None = None  # batched extraction: the stand-in for the shared detector


def _watch_parent(parent_pid: int, interval_s: float = 1.0) -> None:
    """Worker thread: exit at once when the extraction's main process is gone (where the kernel's
    parent-death signal is not available, or the fork server in between outlived it)."""
    from dfpanel.extract.cache import _start_time

    start = _start_time(parent_pid)
    while True:
        time.sleep(interval_s)
        if os.path.isdir("/proc"):
            gone = _start_time(parent_pid) != start  # gone, a zombie, or its pid reused
        else:
            try:
                os.kill(parent_pid, 0)
                gone = False
            except ProcessLookupError:
                gone = True
            except OSError:
                gone = False
        if gone:
            os._exit(1)  # its temp entry names a dead process: the next run removes it


def _init_worker(cfg: ExtractConfig, log_level: int, parent_pid: int | None = None, shared: tuple | None = None) -> None:
    global _worker_cfg, _worker_detector
    import signal
    import threading

    # Die with the parent (the fork server; it dies with the main process, forkserver_guard), and
    # watch the main process too: a worker (0.65-1 GB) must never outlive the run.
    from dfpanel.extract.forkserver_guard import die_with_parent

    die_with_parent()
    if parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="dfpanel-parent-watch").start()

    import cv2
    import torch

    # Ctrl-C and SIGTERM (sent to the whole process group or cgroup by terminals, systemd, Slurm)
    # are the parent's to handle: it stops handing out videos and records what finished; a worker
    # finishes (or its EntryWriter leaves no trace of) the video it holds.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    logging.basicConfig(level=log_level)
    _worker_cfg = cfg
    if shared is not None:  # batched: network passes go to the run's one detector (dfpanel.extract.batched)
        from dfpanel.extract.batched import remote_detector

        _worker_detector = remote_detector(cfg, shared)
    # Load once per worker, up front, and run it once: the first forward pass sets up kernels.
    (_worker_detector or get_detector(cfg)).detect([np.zeros((96, 96, 3), np.uint8)])


def _work(record: VideoRecord, out: str) -> dict:
    assert _worker_cfg is not None
    return process_record(record, Path(out), _worker_cfg, _worker_detector)


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
    try:
        out.mkdir(parents=True, exist_ok=True)
        record_cache_spec(out, cfg.spec)  # refuses a cache extracted with other settings
    except OSError as exc:
        if is_disk_full(exc):
            raise CacheFullError(disk_full_message(out, "input_spec.json")) from None
        raise
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
        try:
            update_report(out, failures=pending_fail, succeeded=pending_ok, run=run, run_key=run_key)
        except OSError as exc:
            if is_disk_full(exc):
                raise CacheFullError(disk_full_message(out, REPORT_FILE)) from None
            raise
        pending_fail, pending_ok, last_save = {}, [], time.monotonic()

    def on_result(res: dict) -> None:
        if res.get("disk_full"):
            raise CacheFullError(res["reason"])
        key = failure_key(res["dataset"], res["id"])
        summary["video_cpu_seconds"] += res.get("cpu_seconds", 0.0)
        for stage, secs in res.get("timings", {}).items():
            summary["stage_seconds"][stage] = summary["stage_seconds"].get(stage, 0.0) + secs
        if res["ok"]:
            rows = res["rows"]
            try:
                for row in rows[1:] + rows[:1]:  # main track last: its row marks the video done
                    append_index_row(out, CacheIndexRow(**row))
            except OSError as exc:
                if is_disk_full(exc):
                    raise CacheFullError(disk_full_message(out, INDEX_FILE)) from None
                raise
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

    pooled = workers > 1 and len(todo) > 1
    pools = server = stop = None
    try:
        with _stop_on_sigterm():
            if pooled and cfg.detect_batch > 0:  # one detector on cfg.device, batching every worker's frames
                from dfpanel.extract.batched import start_server

                server = start_server(cfg)
            pools = _WorkerPool(cfg, workers, shared=server.client if server else None) if pooled else None
            pool = pools.start() if pools else None
            with _progress(progress, len(todo)) as advance:
                if pools is None:
                    for record in todo:
                        on_result(process_record(record, out, cfg))
                        advance(summary["failed"])
                else:
                    _run_pool(todo, out, pools, pool, on_result, lambda: advance(summary["failed"]))
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Interrupted): record what finished, then stop
        summary["interrupted"] = getattr(exc, "signal_name", "SIGINT")
        exc.summary = summary
        stop = exc
        raise
    except CacheFullError as exc:
        stop = exc
        raise
    finally:
        if server is not None:
            summary["detector"] = {"device": cfg.device, "detect_batch": cfg.detect_batch, **server.close()}
        elapsed = time.perf_counter() - t0
        summary["seconds"] = round(elapsed, 3)
        summary["videos_per_s"] = round(len(todo) / elapsed, 3) if elapsed > 0 and todo else 0.0
        summary["frames_per_s"] = round(summary["frames"] / elapsed, 2) if elapsed > 0 else 0.0
        try:
            save()
        except CacheFullError:
            if not isinstance(stop, CacheFullError):
                raise  # else: the disk is still full; what is on record stays as it was
    summary["report"] = str(out / "extract_report.json")
    summary["exit_code"] = 1 if strict and summary["failed"] else 0
    return summary


class _WorkerPool:
    """Makes process pools for extraction. Workers come from a fork server that imported torch,
    the detector and PyAV once (and never computed, so no OpenMP/CUDA state is inherited): a
    worker is ready in well under a second instead of re-importing torch (seconds). Plain fork is
    not safe once this process has run torch ops. Windows spawns. Each worker sets torch to one
    thread and loads its own detector once (or, given `shared`, connects to the run's batched one)."""

    def __init__(self, cfg: ExtractConfig, workers: int, shared: tuple | None = None):
        import multiprocessing as mp

        self.cfg, self.workers, self.shared = replace(cfg, decode_threads=1), workers, shared
        if "forkserver" in mp.get_all_start_methods():
            self.ctx = mp.get_context("forkserver")
            self.ctx.set_forkserver_preload(["dfpanel.extract.forkserver_guard", "torch", "facenet_pytorch", "cv2", "av",
                                             "dfpanel.extract.run", "dfpanel.extract.video", "dfpanel.extract.batched"])
        else:
            self.ctx = mp.get_context("spawn")

    def start(self):
        """A pool whose workers are up (started here, in the main thread, before any progress-bar
        thread exists: the fork server's parent-death signal follows the thread that started it)."""
        from concurrent.futures import ProcessPoolExecutor

        from dfpanel.extract.forkserver_guard import PARENT_ENV

        if self.ctx.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            os.environ[PARENT_ENV] = str(os.getpid())  # read by the fork server as it starts
            try:
                forkserver.ensure_running()
            finally:
                os.environ.pop(PARENT_ENV, None)
        pool = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=self.ctx, initializer=_init_worker,
            initargs=(self.cfg, logging.getLogger().level, os.getpid(), self.shared),
        )
        try:
            pool.submit(_ready).result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
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
