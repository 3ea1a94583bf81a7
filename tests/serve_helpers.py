"""Shared pieces of the web service's tests: a service on stand-in specialists, a live server on a
free loopback port, a detector that waits where a test wants it to."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from detect_fakes import fake_extract, fake_runners

from dfpanel.detect.pipeline import DetectConfig, PanelDetector
from dfpanel.panel.combiner import Panel
from dfpanel.serve.app import ServeConfig, create_app


def fake_detector(**kw) -> PanelDetector:
    return PanelDetector(fake_runners(), Panel(), DetectConfig(clip_len=4), extract=fake_extract, **kw)


class GatedDetector:
    """A PanelDetector that stops at a stage until `go` is set (so a test sees a job mid-way)."""

    def __init__(self, stage: str = "scoring CM", delay: float = 0.0):
        self.inner = fake_detector()
        self.stage, self.delay = stage, delay
        self.reached, self.go = threading.Event(), threading.Event()

    def analyse(self, video, progress=None):
        def hear(stage, fraction):
            if progress:
                progress(stage, fraction)
            if self.delay:
                time.sleep(self.delay)
            if stage == self.stage:
                self.reached.set()
                self.go.wait(30)

        return self.inner.analyse(video, progress=hear)

    def __getattr__(self, item):
        return getattr(self.inner, item)


class DyingDetector:
    """The stand-in panel, except that a video named *crash* kills the process analysing it (as a
    decoder crash would) and one named *slow* takes a minute."""

    def __init__(self):
        self.inner = fake_detector()

    def analyse(self, video, progress=None):
        if "crash" in Path(video).name:
            os._exit(3)
        if "slow" in Path(video).name:  # still analysing when a test stops the service
            progress("scoring BG", 0.6)
            time.sleep(60)
        return self.inner.analyse(video, progress=progress)

    def __getattr__(self, item):
        return getattr(self.inner, item)


@dataclass(frozen=True)
class FakeFactory:
    """What a spawned analysis process builds in the tests (picklable: it is imported there by name)."""

    def build(self):
        return DyingDetector()


def make_app(data_dir: Path, detector=None, **cfg):
    cfg.setdefault("allowed_hosts", ["testserver", "127.0.0.1", "localhost"])
    return create_app(detector or fake_detector(), ServeConfig(data_dir=data_dir, **cfg))


def wait_for(client, job_id: str, states=("done", "failed"), timeout: float = 30.0, headers=None) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = client.get(f"/api/v1/jobs/{job_id}", headers=headers).json()
        if job.get("status") in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {states}: {job}")


class LiveServer:
    """uvicorn serving `app` on 127.0.0.1 in a thread (a real socket: real streaming, real headers)."""

    def __init__(self, app, **uvicorn_options):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"{'https' if uvicorn_options.get('ssl_certfile') else 'http'}://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5, **uvicorn_options))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        end = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()
