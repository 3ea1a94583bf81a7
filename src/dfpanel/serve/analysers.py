"""Where a job's analysis runs: one analyser per worker.

`ProcessAnalyser` (what `dfpanel serve` uses): a child process per worker, started with `spawn`, that
loads its own copy of the specialists from a `DetectorFactory` and runs `PanelDetector.analyse` at a
lower CPU priority, sending its progress back over a pipe. The web process then holds no model and
shares no GIL with the analysis, so pages and status polls stay quick while videos are analysed (with
analysis in threads of the web process, status polls under load fell to ~30/s on 2 cores); and a video
that crashes its decoder ends that child, not the service: the job is marked failed, the next job
gets a fresh child.

`ThreadAnalyser`: the same work in the calling thread, on a detector already loaded (tests; embedding
the app in another program).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from dfpanel.errors import DfpanelError

log = logging.getLogger(__name__)
# Analysis yields the CPU to the web process (a nice value is per process on Linux; 0..19, higher = lower priority).
ANALYSIS_NICE = 10


class AnalysisFailed(Exception):
    """No report could be made for a job (its analysis process died); the message is one line."""


@dataclass(frozen=True)
class DetectorFactory:
    """How a child process builds its detector: what `dfpanel serve`'s options say (picklable)."""

    weights: str
    frames: int | None = None
    device: str = "cpu"
    backend: str = "torch"

    def build(self):
        from dfpanel.detect.build import build_detector

        return build_detector(Path(self.weights), frames=self.frames, device=self.device, backend=self.backend)


def describe(detector) -> dict:
    """What the web pages say of the loaded panel."""
    return {"specialists": [r.name for r in detector.runners], "panel_fitted": bool(detector.panel.fitted),
            "training_data": detector.training_data()}


def analyse_with(detector, path: Path, progress) -> tuple[dict, list[dict]]:
    """(report, thumbnails) of one video; a bug on one video is a failed report, never an exception."""
    try:
        outcome = detector.analyse(path, progress=progress)
    except Exception as exc:  # keep the traceback in the log, not in the report
        log.exception("serve: detection failed on %s", path.name)
        outcome = detector.fail(path, "error", f"internal error while analysing ({type(exc).__name__}); "
                                               "the server's log has the details")
    return outcome.report, outcome.thumbnails


class ThreadAnalyser:
    def __init__(self, detector):
        self.detector = detector
        self.info = describe(detector)

    def start(self) -> dict:
        return self.info

    def analyse(self, path: Path, progress) -> tuple[dict, list[dict]]:
        return analyse_with(self.detector, path, progress)

    def stop(self) -> None:
        pass


def _child(conn, factory, nice: int, threads: int | None) -> None:
    """The analysis process: build the detector, say ready, analyse what the pipe sends until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is for the web process, which stops us
    try:
        os.nice(nice)
    except OSError:
        pass
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        detector = factory.build()
    except DfpanelError as exc:
        conn.send(("error", str(exc)))
        return
    except Exception as exc:
        conn.send(("error", f"could not load the weights ({type(exc).__name__}: {exc})"))
        return
    conn.send(("ready", describe(detector)))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the web process is gone
            return
        if msg[0] != "job":
            return

        def progress(stage: str, fraction: float) -> None:
            conn.send(("progress", stage, fraction))

        report, thumbnails = analyse_with(detector, Path(msg[1]), progress)
        conn.send(("done", report, thumbnails))


class ProcessAnalyser:
    def __init__(self, factory, nice: int = ANALYSIS_NICE, threads: int | None = None, start_timeout: float = 900.0):
        """`threads`: torch's threads in the child (the CPU cores shared out between the workers: more
        threads than cores across processes only adds contention)."""
        self.factory, self.nice, self.threads, self.start_timeout = factory, nice, threads, start_timeout
        self.proc = None
        self.conn = None
        self.info: dict | None = None

    def start(self) -> dict:
        """Start the child and wait until its models are loaded; DfpanelError (one line) if they cannot be."""
        ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited torch threads or locks
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_child, args=(child, self.factory, self.nice, self.threads), daemon=True,
                                name="dfpanel-analysis")
        self.proc.start()
        child.close()
        self.conn = parent
        if not parent.poll(self.start_timeout):
            self.stop()
            raise DfpanelError(f"the analysis process did not load the weights within {self.start_timeout:.0f} s")
        try:
            kind, payload = parent.recv()
        except EOFError:
            code = self.proc.exitcode
            self.stop()
            raise DfpanelError(f"the analysis process stopped while loading the weights ({_how(code)})") from None
        if kind != "ready":
            self.stop()
            raise DfpanelError(payload)
        self.info = payload
        return payload

    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def analyse(self, path: Path, progress) -> tuple[dict, list[dict]]:
        if not self.alive():
            self.start()
        # held here: stop() (the service shutting down, from another thread) clears the attributes
        proc, conn = self.proc, self.conn
        try:
            conn.send(("job", str(path)))
            while True:
                if conn.poll(0.5):
                    msg = conn.recv()
                    if msg[0] == "progress":
                        progress(msg[1], msg[2])
                    elif msg[0] == "done":
                        return msg[1], msg[2]
                elif not proc.is_alive():
                    break
        except (EOFError, OSError):  # the pipe closed: the child died, or stop() closed it
            pass
        proc.join(5)
        code = proc.exitcode
        self.stop()
        log.error("serve: the analysis process stopped (%s) on %s", _how(code), path.name)
        raise AnalysisFailed(f"the analysis stopped on this video ({_how(code)}); the file may be malformed")

    def stop(self) -> None:
        # taken out first: the service's shutdown and a worker whose child died may both call this
        conn, self.conn = self.conn, None
        proc, self.proc = self.proc, None
        if conn is not None:
            try:
                conn.send(("stop",))
            except OSError:  # BrokenPipeError included: the child is gone already
                pass
            conn.close()
        if proc is not None:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def _how(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
