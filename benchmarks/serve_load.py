"""`dfpanel serve` under load: concurrent uploads and a steady rate of status polls on 127.0.0.1,
against the same server idle, measured in the same run.

Set-up (a temp folder): tiny random-init weights of all five specialists (or `--weights DIR`), distinct
synthetic talking-head videos (`dfpanel.synth`, folder layout: one file name and one size per client),
and `dfpanel serve` started as a child process on a free loopback port with its own --data-dir. The
real pipeline runs on every upload: probe, face extraction, specialists, report.

  1. baseline, server idle: its memory after start (VmRSS), one warm-up job analysed, then
     `--baseline N` sequential GET / and GET /api/v1/jobs/{id} (that finished job) and their latency;
  2. load: `--uploads` clients upload at once (a 503 is retried after its Retry-After, capped by
     `--retry-cap`), then each polls its own job until it is done; meanwhile a paced poller issues
     `--poll-rate` status polls per second in total, spread over every job id known so far, and a page
     poller GETs / `--page-rate` times per second; stops when every job is done or after `--bound` s.
  3. checks (the exit status is 1 if any fails): every upload answered; every accepted job done
     (none 404, none failed, none stuck at the bound); every answer for a job names that job's own
     file and size (the report included: none mixed up between clients); no 5xx other than 503, no
     connection error.

Figures: p50/p95/max latency of GET / and of status polls under load and their ratio to idle; the
poll rate achieved; jobs per minute, turnaround and analysis time; upload latency; the server's peak
memory (VmHWM) against its memory after start; server CPU seconds per job.

    .venv/bin/python benchmarks/serve_load.py              # 20 uploads, 100 polls/s, --workers 2 --queue 64
    .venv/bin/python benchmarks/serve_load.py --smoke      # 4 uploads, 20 polls/s, queue 2 (the 503 path)
    .venv/bin/python benchmarks/serve_load.py --weights dfpanel-demo/weights --frames 16

Writes benchmarks/results/serve_load.json (--smoke: serve_load_smoke.json).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
SRC = Path(__file__).resolve().parents[1] / "src"


# ---- set-up --------------------------------------------------------------------------------------
def make_weights(folder: Path, image_size: int = 64, clip_len: int = 4) -> Path:
    """Random-init weights of every specialist on the tiny backbone (what the tests load for real)."""
    import torch

    from dfpanel.models.specialists.base import create_specialist, list_specialists
    from dfpanel.weights.io import save_weights

    torch.manual_seed(0)
    for name in list_specialists():
        model = create_specialist(name, backbone="tiny", pretrained=False, image_size=image_size, clip_len=clip_len).eval()
        save_weights(model, folder / name, {"stage": "benchmark"})
    return folder


def make_videos(work: Path, n: int, seconds: float, size: str, seed: int) -> list[Path]:
    """`n` synthetic talking-head videos with distinct file names and distinct sizes in bytes (so an
    answer carrying another client's job is caught). Real and fake videos of the folder layout."""
    from dfpanel.synth import synthesize

    w, h = (int(v) for v in size.lower().split("x"))
    root = work / "synth"
    clips = n // 2 + 2  # two videos per clip, and spares in case two sizes coincide
    synthesize("folder", root, videos=clips, seconds=seconds, size=(w, h), seed=seed, progress=False)
    found = sorted(root.rglob("*.mp4"), key=lambda p: p.name)
    picked, sizes = [], set()
    for p in found:
        if p.stat().st_size not in sizes and not p.name.startswith("."):
            sizes.add(p.stat().st_size)
            picked.append(p)
    if len(picked) < n:
        raise SystemExit(f"only {len(picked)} videos of distinct sizes from the synth set; try another --seed")
    out = work / "uploads"
    out.mkdir(exist_ok=True)
    videos = []
    for i, p in enumerate(picked[:n]):
        dst = out / f"client{i:02d}_{p.stem}.mp4"
        shutil.copyfile(p, dst)
        videos.append(dst)
    return videos


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the server process ----------------------------------------------------------------------------
def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants: the web process and its analysis processes (spawned, one per worker)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[ppid].append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _status(pid: int) -> dict[str, float]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak resident) in MB, from /proc, summed over the server's process tree (the
    sum of each process's peak bounds their peak together from above); `web_VmRSS`: the web process alone."""
    out: dict[str, float] = {}
    for i, p in enumerate(process_tree(pid)):
        st = _status(p)
        for k, v in st.items():
            out[k] = out.get(k, 0.0) + v
        if i == 0 and "VmRSS" in st:
            out["web_VmRSS"] = st["VmRSS"]
    return out


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) the server's process tree has used, threads included."""
    return sum(_cpu(p) for p in process_tree(pid))


def cpu_by_process() -> dict[int, tuple[float, str]]:
    """Every process's CPU seconds so far and its command line (to name what else keeps the CPUs busy)."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            out[int(d.name)] = (_cpu(int(d.name)), cmd[:120])
    return out


def busy_others(before: dict, after: dict, seconds: float, mine: set[int]) -> list[dict]:
    """Processes other than this benchmark and its server that used over 20% of a core meanwhile."""
    busy = []
    for pid, (cpu, cmd) in after.items():
        if pid in mine or pid not in before or not cmd:
            continue
        share = (cpu - before[pid][0]) / max(seconds, 1e-9)
        if share > 0.2:
            busy.append({"pid": pid, "cpu_share": round(share, 2), "cmd": cmd})
    return sorted(busy, key=lambda b: -b["cpu_share"])


class Server:
    """`dfpanel serve` in a child process (the same Python, this checkout's package)."""

    def __init__(self, args, weights: Path, data_dir: Path, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "dfpanel", "serve", "--weights", str(weights), "--port", str(self.port),
               "--data-dir", str(data_dir), "--workers", str(args.workers), "--queue", str(args.queue),
               "--retention", "never",
               # the clients stand for 20 people but all come from 127.0.0.1 without cookies: one "client"
               "--max-per-client", "0"]
        if args.frames:
            cmd += ["--frames", str(args.frames)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
        if args.server_threads:
            env["OMP_NUM_THREADS"] = str(args.server_threads)
        self.cmd = cmd
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 (open while the server lives; closed in stop)
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 180.0) -> float:
        import httpx

        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"dfpanel serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"dfpanel serve did not answer /healthz in {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def stop(self, timeout: float = 45.0) -> float:
        """SIGTERM (uvicorn's graceful shutdown), then SIGKILL; the seconds it took."""
        t0 = time.perf_counter()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return time.perf_counter() - t0


# ---- figures ---------------------------------------------------------------------------------------
def latency(values: list[float]) -> dict:
    """p50/p95/max/mean of latencies given in seconds, in milliseconds."""
    if not values:
        return {"n": 0}
    a = np.asarray(values) * 1000
    return {"n": len(values), "p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "max_ms": round(float(a.max()), 2), "mean_ms": round(float(a.mean()), 2)}


def ratio(load: dict, idle: dict, key: str) -> float | None:
    return round(load[key] / idle[key], 2) if load.get(key) and idle.get(key) else None


# ---- the load --------------------------------------------------------------------------------------
class Load:
    def __init__(self, url: str, videos: list[Path], args):
        self.url, self.videos, self.args = url, videos, args
        self.expected: dict[str, tuple[str, int]] = {}  # job id -> (file name, size)
        self.ids: list[str] = []  # every accepted job id, in order (what the poller spreads over)
        self.status_lat: list[float] = []
        self.page_lat: list[float] = []
        self.client_status_lat: list[float] = []
        self.upload_lat: list[float] = []
        self.codes: collections.Counter = collections.Counter()  # "endpoint status" -> count
        self.errors: list[str] = []  # connection errors, timeouts, unexpected answers (the first 20 kept)
        self.n_errors = 0
        self.mixed: dict[str, str] = {}  # job id -> what was wrong
        self.not_found: set[str] = set()
        self.refused_503 = 0
        self.retry_after: list[float] = []
        self.outcomes: dict[int, dict] = {}
        self.reconnects = 0  # GETs sent again once on a connection the server had closed (keep-alive race)
        self.polls_missed = 0  # ticks of the paced pollers dropped (too far behind or too many in flight)
        self.pages_missed = 0
        self.mem: list[tuple[float, float]] = []
        self.stop: asyncio.Event | None = None  # made in run(), inside its event loop

    def error(self, what: str) -> None:
        self.n_errors += 1
        if len(self.errors) < 20:
            self.errors.append(what)

    async def get(self, client, path: str, **kw):
        """GET, sent again once if the pooled connection turns out closed (uvicorn drops keep-alive
        connections idle over 5 s, and one can be closed just as it is reused: what any client retries)."""
        import httpx

        try:
            return await client.get(path, **kw)
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError):
            self.reconnects += 1
            return await client.get(path, **kw)

    async def timed_get(self, client, path: str, latencies: list, label: str, **kw):
        """`get`, its latency appended to `latencies`; a connection error is recorded under `label` and
        gives None."""
        import httpx

        t = time.perf_counter()
        try:
            res = await self.get(client, path, **kw)
        except httpx.HTTPError as exc:
            self.error(f"{label}: {type(exc).__name__} {exc}")
            return None
        latencies.append(time.perf_counter() - t)
        return res

    def check(self, jid: str, res, where: str) -> dict | None:
        """A status answer for job `jid`: is it that job, with that client's file? None unless 200."""
        self.codes[f"{where} {res.status_code}"] += 1
        if res.status_code == 404:
            self.not_found.add(jid)
            return None
        if res.status_code != 200:
            self.error(f"{where} {jid}: HTTP {res.status_code} {res.text[:200]}")
            return None
        job = res.json()
        name, size = self.expected[jid]
        wrong = []
        if job.get("id") != jid:
            wrong.append(f"id {job.get('id')}")
        if job.get("name") != name:
            wrong.append(f"name {job.get('name')}")
        if job.get("size_bytes") != size:
            wrong.append(f"size_bytes {job.get('size_bytes')} != {size}")
        report = job.get("report")
        if job.get("status") == "done":
            if not isinstance(report, dict):
                wrong.append("done without a report")
            elif (report.get("video") or {}).get("name") != name:
                wrong.append(f"report names {(report.get('video') or {}).get('name')}")
        if wrong:
            self.mixed.setdefault(jid, f"{name}: " + ", ".join(wrong))
        return job

    async def client(self, i: int, path: Path, t0: float) -> None:
        import httpx

        data, name = path.read_bytes(), path.name
        out = self.outcomes[i] = {"name": name, "size": len(data), "answered": False, "accepted": False,
                                  "refused_503": 0, "status": None}
        async with httpx.AsyncClient(base_url=self.url, timeout=self.args.timeout) as c:
            while True:
                t = time.perf_counter()
                try:
                    res = await c.post("/api/v1/jobs", files={"file": (name, data, "video/mp4")})
                except httpx.HTTPError as exc:
                    self.error(f"upload {name}: {type(exc).__name__} {exc}")
                    return
                self.codes[f"upload {res.status_code}"] += 1
                out["answered"] = True
                if res.status_code == 503:
                    self.refused_503 += 1
                    out["refused_503"] += 1
                    wait = float(res.headers.get("retry-after", "5"))
                    self.retry_after.append(wait)
                    await asyncio.sleep(min(wait, self.args.retry_cap))
                    continue
                if res.status_code != 202:
                    self.error(f"upload {name}: HTTP {res.status_code} {res.text[:200]}")
                    return
                self.upload_lat.append(time.perf_counter() - t)
                break
            job = res.json()
            jid = job["id"]
            self.expected[jid] = (name, len(data))
            self.ids.append(jid)
            out.update(accepted=True, id=jid, accepted_s=time.perf_counter() - t0)
            if job.get("name") != name or job.get("size_bytes") != len(data):
                self.mixed.setdefault(jid, f"{name}: the upload's answer says {job.get('name')}, {job.get('size_bytes')} bytes")
            while True:
                await asyncio.sleep(self.args.client_poll)
                res = await self.timed_get(c, f"/api/v1/jobs/{jid}", self.client_status_lat, f"status {name}")
                if res is None:
                    continue
                job = self.check(jid, res, "client-status")
                if job is None:
                    if jid in self.not_found:
                        out["status"] = "404"
                        return
                    continue
                out["status"] = job["status"]
                if job["status"] in ("done", "failed"):
                    report = job.get("report") or {}
                    out.update(finished_s=time.perf_counter() - t0, result=(job.get("result") or {}).get("status"),
                               analysis_s=(report.get("timings") or {}).get("total"))
                    return

    async def paced(self, rate: float, one, missed_attr: str, in_flight_cap: int) -> None:
        """Call `one()` `rate` times per second, without waiting for earlier calls (open loop); ticks
        more than half a second late, or beyond `in_flight_cap` calls in flight, are dropped and counted."""
        interval = 1.0 / rate
        tasks: set[asyncio.Task] = set()
        nxt = time.perf_counter()
        while not self.stop.is_set():
            now = time.perf_counter()
            if now < nxt:
                try:
                    await asyncio.wait_for(self.stop.wait(), nxt - now)
                except asyncio.TimeoutError:
                    pass
                continue
            if now - nxt > 0.5:
                late = int((now - nxt) / interval)
                setattr(self, missed_attr, getattr(self, missed_attr) + late)
                nxt += late * interval
            nxt += interval
            if len(tasks) >= in_flight_cap:
                setattr(self, missed_attr, getattr(self, missed_attr) + 1)
                continue
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=self.args.timeout)

    async def status_poller(self) -> tuple[float, float]:
        import httpx

        while not self.ids and not self.stop.is_set():
            await asyncio.sleep(0.01)
        k = 0
        limits = httpx.Limits(max_connections=self.args.in_flight, max_keepalive_connections=self.args.in_flight)
        async with httpx.AsyncClient(base_url=self.url, timeout=self.args.timeout, limits=limits) as c:
            async def one():
                nonlocal k
                jid = self.ids[k % len(self.ids)]
                k += 1
                res = await self.timed_get(c, f"/api/v1/jobs/{jid}", self.status_lat, f"poll {jid}")
                if res is not None:
                    self.check(jid, res, "status")

            t0 = time.perf_counter()
            await self.paced(self.args.poll_rate, one, "polls_missed", self.args.in_flight)
            return t0, time.perf_counter()

    async def page_poller(self) -> None:
        import httpx

        async with httpx.AsyncClient(base_url=self.url, timeout=self.args.timeout) as c:  # one browser (keeps its cookie)
            async def one():
                res = await self.timed_get(c, "/", self.page_lat, "page", headers={"accept": "text/html"})
                if res is None:
                    return
                self.codes[f"page {res.status_code}"] += 1
                if res.status_code != 200 or "<html" not in res.text.lower():
                    self.error(f"page: HTTP {res.status_code} {res.text[:200]}")

            await self.paced(self.args.page_rate, one, "pages_missed", 16)

    async def memory(self, pid: int, t0: float) -> None:
        while not self.stop.is_set():
            st = proc_status(pid)
            if "VmRSS" in st:
                self.mem.append((time.perf_counter() - t0, st["VmRSS"]))
            try:
                await asyncio.wait_for(self.stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass

    async def run(self, pid: int) -> dict:
        self.stop = asyncio.Event()
        t0 = time.perf_counter()
        pollers = [asyncio.create_task(self.status_poller()), asyncio.create_task(self.page_poller()),
                   asyncio.create_task(self.memory(pid, t0))]
        clients = [asyncio.create_task(self.client(i, p, t0)) for i, p in enumerate(self.videos)]
        done, pending = await asyncio.wait(clients, timeout=self.args.bound)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                self.error(f"client crashed: {task.exception()!r}")
        elapsed = time.perf_counter() - t0
        self.stop.set()
        (p0, p1), *_ = await asyncio.gather(*pollers)
        return {"elapsed_s": elapsed, "timed_out": bool(pending), "poll_window_s": p1 - p0}


async def idle_baseline(url: str, job_id: str, n: int, timeout: float) -> dict:
    """`n` sequential GET / and GET /api/v1/jobs/{id} on the idle server (after a few unmeasured ones)."""
    import httpx

    out = {}
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as c:
        for what, path, headers in (("page", "/", {"accept": "text/html"}), ("status", f"/api/v1/jobs/{job_id}", {})):
            lat = []
            for i in range(n + 5):
                t = time.perf_counter()
                res = await c.get(path, headers=headers)
                if res.status_code != 200:
                    raise SystemExit(f"idle baseline: GET {path} answered {res.status_code}: {res.text[:300]}")
                if i >= 5:
                    lat.append(time.perf_counter() - t)
            out[what] = latency(lat)
    return out


async def idle_paced(url: str, job_id: str, video: Path, args, seconds: float) -> dict:
    """The paced status poller alone for `seconds` on the idle server (one finished job): what this client
    and this server reach at `--poll-rate` with no analysis running."""
    load = Load(url, [], args)
    load.stop = asyncio.Event()
    load.expected[job_id] = (video.name, video.stat().st_size)
    load.ids.append(job_id)
    task = asyncio.create_task(load.status_poller())
    await asyncio.sleep(seconds)
    load.stop.set()
    p0, p1 = await task
    return {**latency(load.status_lat), "seconds": seconds, "polls_per_s": round(len(load.status_lat) / (p1 - p0), 1),
            "polls_missed": load.polls_missed, "errors": load.n_errors, "mixed_up": len(load.mixed)}


async def warm_up(url: str, video: Path, timeout: float, bound: float) -> tuple[str, dict]:
    """One job through the whole pipeline on the idle server (first-run costs paid before measuring)."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=timeout) as c:
        res = await c.post("/api/v1/jobs", files={"file": (video.name, video.read_bytes(), "video/mp4")})
        if res.status_code != 202:
            raise SystemExit(f"warm-up upload answered {res.status_code}: {res.text[:300]}")
        jid = res.json()["id"]
        end = time.perf_counter() + bound
        while time.perf_counter() < end:
            job = (await c.get(f"/api/v1/jobs/{jid}")).json()
            if job["status"] in ("done", "failed"):
                if job["status"] != "done" or job["report"]["video"]["name"] != video.name:
                    raise SystemExit(f"warm-up job did not finish well: {json.dumps(job)[:500]}")
                return jid, job
            await asyncio.sleep(0.1)
    raise SystemExit(f"warm-up job not done in {bound:.0f} s")


# ---- main --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uploads", type=int, default=20, help="concurrent clients, one distinct video each")
    ap.add_argument("--poll-rate", type=float, default=100.0, help="status polls per second, in total")
    ap.add_argument("--page-rate", type=float, default=4.0, help="GET / per second")
    ap.add_argument("--client-poll", type=float, default=0.5, help="seconds between a client's polls of its own job")
    ap.add_argument("--bound", type=float, default=600.0, help="stop the load after this many seconds")
    ap.add_argument("--baseline", type=int, default=200, help="sequential idle requests per endpoint")
    ap.add_argument("--idle-paced", type=float, default=5.0, help="seconds of paced status polls on the idle server")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queue", type=int, default=64)
    ap.add_argument("--retry-cap", type=float, default=30.0, help="longest wait after a 503, whatever its Retry-After")
    ap.add_argument("--in-flight", type=int, default=200, help="most status polls in flight at once")
    ap.add_argument("--timeout", type=float, default=120.0, help="per-request timeout (s)")
    ap.add_argument("--weights", type=Path, default=None, help="weights folder (default: tiny random-init, made here)")
    ap.add_argument("--frames", type=int, default=None, help="serve --frames (default: 16 with the tiny weights, else the folder's own)")
    ap.add_argument("--server-threads", type=int, default=None, help="OMP_NUM_THREADS for the server (default: not set)")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each synthetic video")
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--workdir", type=Path, default=None, help="keep videos, weights, data dir and server log here")
    ap.add_argument("--smoke", action="store_true", help="4 uploads, 20 polls/s, queue 2, 20 idle requests, 180 s bound")
    ap.add_argument("--out", type=Path, default=None, help="results JSON (a folder: serve_load[_smoke].json in it)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.uploads, args.poll_rate, args.page_rate, args.baseline = 4, 20.0, 2.0, 20
        args.queue, args.bound, args.retry_cap, args.seconds = 2, 180.0, 3.0, 1.0
        args.idle_paced = 2.0
    if args.weights is None and args.frames is None:
        args.frames = 16
    fname = "serve_load_smoke.json" if args.smoke else "serve_load.json"
    out = args.out or RESULTS / fname
    if out.is_dir():
        out = out / fname

    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="dfpanel-bench-serve-")
    work = args.workdir or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, work, out)
    finally:
        if tmp is not None:
            tmp.cleanup()


def run(args, work: Path, out: Path) -> dict:
    t = time.perf_counter()
    videos = make_videos(work, args.uploads + 1, args.seconds, args.size, args.seed)
    warm_video, videos = videos[-1], videos[:-1]
    weights = args.weights or make_weights(work / "weights")
    print(f"{len(videos)} videos ({args.size}, {args.seconds:g} s, {min(v.stat().st_size for v in videos) // 1024}-"
          f"{max(v.stat().st_size for v in videos) // 1024} KB) and weights ready in {time.perf_counter() - t:.0f} s")

    data_dir = work / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    cpu_before, wall_before = cpu_by_process(), time.perf_counter()
    load_before = os.getloadavg()
    server = Server(args, weights, data_dir, work / "server.log")
    result: dict = {"benchmark": "serve_load", "smoke": args.smoke}
    try:
        startup_s = server.wait_ready()
        mem_start = proc_status(server.pid)
        warm_jid, warm_job = asyncio.run(warm_up(server.url, warm_video, args.timeout, args.bound))
        mem_warm = proc_status(server.pid)
        idle = asyncio.run(idle_baseline(server.url, warm_jid, args.baseline, args.timeout))
        idle["status_paced"] = asyncio.run(idle_paced(server.url, warm_jid, warm_video, args, args.idle_paced))
        print(f"server up in {startup_s:.1f} s (pid {server.pid}, {mem_start['VmRSS']:.0f} MB); warm-up job "
              f"{(warm_job['report'].get('timings') or {}).get('total', 0):.2f} s; idle: GET / p95 "
              f"{idle['page']['p95_ms']:.1f} ms, status p95 {idle['status']['p95_ms']:.1f} ms")

        cpu_load0 = proc_cpu(server.pid)
        load = Load(server.url, videos, args)
        client_cpu0 = time.process_time()
        span = asyncio.run(load.run(server.pid))
        client_cpu = time.process_time() - client_cpu0
        cpu_load = proc_cpu(server.pid) - cpu_load0
        cpu_total = proc_cpu(server.pid)
        mem_end = proc_status(server.pid)
    finally:
        stop_s = server.stop()
    wall = time.perf_counter() - wall_before
    others = busy_others(cpu_before, cpu_by_process(), wall, {os.getpid(), *process_tree(server.pid)})
    log_text = server.log_path.read_text(errors="replace")

    # ---- checks ------------------------------------------------------------------------------------
    outcomes = [load.outcomes.get(i, {"name": v.name, "answered": False, "accepted": False, "status": None})
                for i, v in enumerate(videos)]
    unanswered = [o["name"] for o in outcomes if not o["answered"]]
    not_accepted = [o["name"] for o in outcomes if not o["accepted"]]
    failed = [o["name"] for o in outcomes if o.get("status") == "failed"]
    stuck = [o["name"] for o in outcomes if o["accepted"] and o.get("status") not in ("done", "failed", "404")]
    lost = sorted(set(failed) | set(stuck) | {load.expected[j][0] for j in load.not_found})
    server_errors = {k: v for k, v in load.codes.items() if k.split()[-1].startswith("5") and not k.endswith(" 503")}
    checks = {
        "every_upload_answered": not unanswered,
        "every_upload_accepted": not not_accepted,
        "every_job_done": not lost,
        "none_mixed_up": not load.mixed and not idle["status_paced"]["mixed_up"],
        "no_5xx_but_503": not server_errors,
        "no_request_errors": load.n_errors == 0 and not idle["status_paced"]["errors"],
        "within_bound": not span["timed_out"],
    }
    ok = all(checks.values())

    # ---- figures -----------------------------------------------------------------------------------
    done = [o for o in outcomes if o.get("status") == "done"]
    finished = [o["finished_s"] for o in done if "finished_s" in o]
    last = max(finished) if finished else span["elapsed_s"]
    turnaround = [o["finished_s"] - o["accepted_s"] for o in done if "finished_s" in o]
    analysis = [o["analysis_s"] for o in done if o.get("analysis_s")]
    st, pg = latency(load.status_lat), latency(load.page_lat)
    hwm = mem_end.get("VmHWM") or max((m for _, m in load.mem), default=0.0)
    result.update({
        "ok": ok,
        "checks": checks,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()],
                    "other_busy_processes": others},
        "setup": {"uploads": args.uploads, "poll_rate": args.poll_rate, "page_rate": args.page_rate,
                  "client_poll_s": args.client_poll, "bound_s": args.bound, "workers": args.workers, "queue": args.queue,
                  "frames": args.frames, "weights": str(args.weights) if args.weights else "tiny random-init (made here)",
                  "server_threads": args.server_threads, "video": {"seconds": args.seconds, "size": args.size,
                  "bytes": [v.stat().st_size for v in videos]}, "server_cmd": server.cmd[1:], "startup_s": round(startup_s, 2),
                  "stop_s": round(stop_s, 2)},
        "idle": {"page": idle["page"], "status": idle["status"], "status_paced": idle["status_paced"],
                 "warm_up_job_s": (warm_job["report"].get("timings") or {}).get("total")},
        "load": {
            "elapsed_s": round(span["elapsed_s"], 2),
            "page": pg, "status": st, "client_status": latency(load.client_status_lat),
            "page_vs_idle": {"p50": ratio(pg, idle["page"], "p50_ms"), "p95": ratio(pg, idle["page"], "p95_ms")},
            "status_vs_idle": {"p50": ratio(st, idle["status"], "p50_ms"), "p95": ratio(st, idle["status"], "p95_ms")},
            "polls_per_s": round(st["n"] / span["poll_window_s"], 1) if span["poll_window_s"] > 0 else 0.0,
            "polls_missed": load.polls_missed, "pages_missed": load.pages_missed,
            "upload": latency(load.upload_lat),
            "reconnects": load.reconnects,
            "refused_503": load.refused_503, "retry_after_s": sorted(set(load.retry_after)),
            "jobs_done": len(done), "jobs_per_min": round(len(done) / last * 60, 2) if done else 0.0,
            "turnaround_s": {"mean": round(float(np.mean(turnaround)), 2), "max": round(float(np.max(turnaround)), 2)}
            if turnaround else None,
            "analysis_s": {"mean": round(float(np.mean(analysis)), 3), "max": round(float(np.max(analysis)), 3)}
            if analysis else None,
            "analysed": sum(1 for o in done if o.get("result") == "analysed"),
            "server_cpu_s": round(cpu_load, 1),
            # the benchmark's own CPU (clients and pollers): it shares the machine with the server
            "client_cpu_s": round(client_cpu, 1), "client_cpu_share": round(client_cpu / span["elapsed_s"], 2),
            "server_cpu_s_per_job": round(cpu_load / len(done), 2) if done else None,
            "codes": dict(sorted(load.codes.items())),
        },
        "memory_mb": {"after_start": round(mem_start.get("VmRSS", 0), 1), "after_warm_up": round(mem_warm.get("VmRSS", 0), 1),
                      "after_load": round(mem_end.get("VmRSS", 0), 1), "peak": round(hwm, 1),
                      "peak_vs_after_start": round(hwm / mem_start["VmRSS"], 2) if mem_start.get("VmRSS") else None,
                      "peak_vs_after_warm_up": round(hwm / mem_warm["VmRSS"], 2) if mem_warm.get("VmRSS") else None,
                      # the web process alone (the rest is the analysis processes, one per worker)
                      "web_after_start": round(mem_start.get("web_VmRSS", 0), 1),
                      "web_after_load": round(mem_end.get("web_VmRSS", 0), 1)},
        "lost": len(lost), "lost_names": lost, "mixed_up": len(load.mixed), "mixed_up_detail": load.mixed,
        "unanswered": len(unanswered), "not_accepted": not_accepted,
        "errors": load.errors, "n_errors": load.n_errors + idle["status_paced"]["errors"], "server_5xx": server_errors,
        "server_log_tracebacks": log_text.count("Traceback"),
        "server_cpu_s_total": round(cpu_total, 1),
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    if result["server_log_tracebacks"]:
        print(f"the server logged {result['server_log_tracebacks']} traceback(s); last lines:\n{log_text[-2000:]}")
    print(f"{'all checks passed' if ok else 'FAILED: ' + ', '.join(k for k, v in checks.items() if not v)}; wrote {out}")
    return result


def print_table(r: dict) -> None:
    ld, idle, mem, m = r["load"], r["idle"], r["memory_mb"], r["machine"]
    s = r["setup"]
    print(f"\n{s['uploads']} concurrent uploads, {s['poll_rate']:g} status polls/s, {s['page_rate']:g} GET / per s; "
          f"serve --workers {s['workers']} --queue {s['queue']}; {m['cpus']} CPUs, load avg {m['load_avg_before'][0]:.1f} "
          f"before / {m['load_avg_after'][0]:.1f} after")
    for o in m["other_busy_processes"][:3]:
        print(f"  also busy meanwhile: {o['cpu_share'] * 100:.0f}% of a core: {o['cmd']}")
    print(f"{'latency (ms)':<24}{'idle p50':>9}{'idle p95':>9}{'load p50':>9}{'load p95':>9}{'load max':>9}"
          f"{'p50 x':>7}{'p95 x':>7}")
    for name, key, vs in (("GET /", "page", "page_vs_idle"), ("GET /api/v1/jobs/{id}", "status", "status_vs_idle")):
        a, b = idle[key], ld[key]
        print(f"{name:<24}{a['p50_ms']:>9.1f}{a['p95_ms']:>9.1f}{b.get('p50_ms', 0):>9.1f}{b.get('p95_ms', 0):>9.1f}"
              f"{b.get('max_ms', 0):>9.1f}{(ld[vs]['p50'] or 0):>6.1f}x{(ld[vs]['p95'] or 0):>6.1f}x")
    ip = idle["status_paced"]
    print(f"{'  idle, paced':<24}{'':>18}{ip.get('p50_ms', 0):>9.1f}{ip.get('p95_ms', 0):>9.1f}{ip.get('max_ms', 0):>9.1f}"
          f"  ({ip['polls_per_s']:.1f} polls/s achieved on the idle server, {ip['polls_missed']} ticks dropped)")
    up = ld["upload"]
    print(f"status polls: {ld['status']['n']} at {ld['polls_per_s']:.1f}/s achieved ({ld['polls_missed']} ticks dropped); "
          f"GET /: {ld['page']['n']}; GETs resent on a closed keep-alive connection: {ld['reconnects']}; the benchmark's own CPU {ld['client_cpu_share'] * 100:.0f}% of a core")
    print(f"uploads: p50 {up.get('p50_ms', 0):.0f} ms, p95 {up.get('p95_ms', 0):.0f} ms; 503 refusals {ld['refused_503']}")
    ta, an = ld["turnaround_s"] or {}, ld["analysis_s"] or {}
    print(f"jobs: {ld['jobs_done']} done ({ld['analysed']} analysed) in {ld['elapsed_s']:.1f} s: {ld['jobs_per_min']:.1f} "
          f"jobs/min; turnaround mean {ta.get('mean', 0):.1f} s (max {ta.get('max', 0):.1f}); analysis mean "
          f"{an.get('mean', 0):.2f} s; server CPU {ld['server_cpu_s_per_job'] or 0:.2f} s/job")
    print(f"server memory: {mem['after_start']:.0f} MB after start, {mem['after_warm_up']:.0f} after the warm-up job, "
          f"peak {mem['peak']:.0f} ({mem['peak_vs_after_start']}x after start, {mem['peak_vs_after_warm_up']}x after "
          f"warm-up), {mem['after_load']:.0f} after the load (web process alone: {mem['web_after_start']:.0f} -> "
          f"{mem['web_after_load']:.0f}; the rest is the analysis processes)")
    print(f"lost {r['lost']}, mixed up {r['mixed_up']}, unanswered {r['unanswered']}, request errors {r['n_errors']}, "
          f"5xx other than 503: {sum(r['server_5xx'].values())}")


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
