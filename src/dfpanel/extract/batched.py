"""Batched face detection for extraction on a GPU: one detector serving many decoding workers.

`run_extraction` with `--workers N` (N > 1) and `ExtractConfig.detect_batch > 0` (the default with
`--device cuda`; `--detect-batch K` asks for it on any device) starts a `DetectorServer` in its main
process: MTCNN's networks (`MTCNNNets`) once, on the device, served by a thread. The worker processes
decode their videos and do the detector's CPU work as before (downscaling frames to `max_side`,
cutting the 48x48 face crops O-Net refines, mapping boxes back, tracking, crops, PNGs); only the
network passes go to the server, over a local authenticated connection (`RemoteNets`). The server
takes every request waiting when it is free and runs them together: equal-sized frames of several
videos go through MTCNN's cascade in one batch (up to `detect_batch` frames a pass), all waiting face
crops through O-Net in one. Workers need no model and no GPU context of their own.

Results equal per-video detection up to float rounding: MTCNN treats each frame of a batch on its
own (no batch statistics; candidate boxes are suppressed per frame), so only the order of the sums
inside a convolution can change with the batch's size (`tests/test_extract_batched.py` bounds it).

Failures stay with their video: a batch that raises is retried request by request and a request
that still fails gets an error its worker raises as `DetectorError` (that video is recorded as
failed, the others go on); a worker that dies only closes its connection; a worker that waits longer
than `timeout_s` for an answer fails its video and reconnects for the next.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np

from dfpanel.errors import ConfigError, DfpanelError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 600.0


class DetectorError(DfpanelError):
    """The shared face detector could not answer for this video (recorded as the video's failure)."""


def shared_nets_class(detector: str):
    """The networks class a detector can share between workers, or a one-line ConfigError."""
    from dfpanel.extract.faces import DETECTORS

    nets = getattr(DETECTORS.get(detector), "nets_class", None)
    if nets is None:
        raise ConfigError(f"--detect-batch: the {detector!r} detector cannot be shared between workers; use --detect-batch 0")
    return nets


# -- server (in the extraction's main process) ---------------------------------------------------


class DetectorServer:
    """Serves `nets` (an `MTCNNNets`) to worker processes. `client` is what a worker needs to
    connect (`RemoteNets(*server.client)`); `close()` stops it and returns its counters."""

    def __init__(self, nets, batch: int = 64, gather_s: float = 0.0):
        from multiprocessing.connection import Listener

        self.nets, self.batch, self.gather_s = nets, max(1, int(batch)), gather_s
        self._authkey = os.urandom(32)
        self._listener = Listener(authkey=self._authkey)  # a socket in a private temp folder (a pipe on Windows)
        self.client = (self._listener.address, self._authkey)
        self._conns: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.stats = {"batches": 0, "requests": 0, "frames": 0, "crops": 0, "max_requests_per_batch": 0,
                      "failed_requests": 0, "net_seconds": 0.0}
        self._threads = [threading.Thread(target=self._accept, daemon=True, name="dfpanel-detector-accept"),
                         threading.Thread(target=self._serve, daemon=True, name="dfpanel-detector")]
        for t in self._threads:
            t.start()

    # connections

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn = self._listener.accept()
            except Exception:  # noqa: BLE001 - a client that failed the handshake, or the listener closed
                if self._stop.is_set():
                    return
                continue
            with self._lock:
                self._conns.append(conn)

    def _drop(self, conn) -> None:
        with self._lock:
            if conn in self._conns:
                self._conns.remove(conn)
        try:
            conn.close()
        except OSError:
            pass

    def _receive(self, ready) -> list:
        got = []
        for conn in ready:
            try:
                got.append((conn, conn.recv()))
            except Exception:  # noqa: BLE001 - EOF: the worker is gone (finished, or died); or a torn message
                self._drop(conn)
        return got

    def _serve(self) -> None:
        from multiprocessing.connection import wait

        while not self._stop.is_set():
            with self._lock:
                conns = list(self._conns)
            if not conns:
                self._stop.wait(0.005)
                continue
            try:
                pending = self._receive(wait(conns, timeout=0.05))
            except (OSError, ValueError):  # a connection closed under us: look again
                continue
            if pending and self.gather_s > 0:  # wait a moment for more workers' requests to batch with
                deadline = time.monotonic() + self.gather_s
                while len(pending) < len(conns) and (left := deadline - time.monotonic()) > 0:
                    asked = {id(c) for c, _ in pending}
                    more = wait([c for c in conns if id(c) not in asked and not c.closed], timeout=left)
                    if not more:
                        break
                    pending += self._receive(more)
            if not pending:
                continue
            replies = self.run([msg for _, msg in pending])
            for (conn, _), reply in zip(pending, replies):
                try:
                    conn.send(reply)
                except Exception:  # noqa: BLE001 - the worker died while we worked for it
                    self._drop(conn)

    def close(self) -> dict:
        """Stop serving (workers still waiting get their connection closed) and return the counters."""
        from multiprocessing.connection import Client

        if not self._stop.is_set():
            self._stop.set()
            try:  # wake the accepting thread, which is blocked in accept()
                Client(self.client[0], authkey=self.client[1]).close()
            except Exception:  # noqa: BLE001
                pass
            self._listener.close()
            for t in self._threads:
                t.join(timeout=5)
            with self._lock:
                conns, self._conns = self._conns, []
            for conn in conns:
                try:
                    conn.close()
                except OSError:
                    pass
        stats = dict(self.stats)
        stats["mean_requests_per_batch"] = round(stats["requests"] / stats["batches"], 2) if stats["batches"] else 0.0
        stats["net_seconds"] = round(stats["net_seconds"], 3)
        return stats

    # the work

    def run(self, requests: list[tuple]) -> list[tuple]:
        """Answer requests together; ("ok", result) or ("error", one line) for each."""
        replies: list = [None] * len(requests)
        t = time.perf_counter()
        try:
            self._run(requests, list(range(len(requests))), replies)
        except Exception:  # noqa: BLE001 - find the request that fails; the others get their answers
            log.debug("batched detection failed; retrying its %d requests one by one", len(requests), exc_info=True)
            for k in range(len(requests)):
                try:
                    self._run(requests, [k], replies)
                except Exception as exc:  # noqa: BLE001
                    replies[k] = ("error", f"the shared face detector failed: {type(exc).__name__}: {str(exc)[:200]}")
                    self.stats["failed_requests"] += 1
        self.stats["net_seconds"] += time.perf_counter() - t
        self.stats["batches"] += 1
        self.stats["requests"] += len(requests)
        self.stats["max_requests_per_batch"] = max(self.stats["max_requests_per_batch"], len(requests))
        return replies

    def _run(self, requests: list[tuple], ks: list[int], replies: list) -> None:
        import torch

        detect: dict[tuple, list[int]] = {}
        onet: list[int] = []
        for k in ks:
            kind = requests[k][0]
            if kind == "detect":
                _, frames, min_size = requests[k]
                detect.setdefault((frames.shape[1:], int(min_size)), []).append(k)
            elif kind == "onet":
                onet.append(k)
            else:
                raise ValueError(f"unknown request {kind!r}")
        for (_, min_size), group in detect.items():
            frames = np.concatenate([requests[k][1] for k in group])
            per_frame = []
            for b0 in range(0, len(frames), self.batch):
                boxes, probs, points = self.nets.detect(frames[b0 : b0 + self.batch], min_size)
                per_frame.extend(zip(boxes, probs, points))
            self.stats["frames"] += len(frames)
            at = 0
            for k in group:
                n = len(requests[k][1])
                mine = per_frame[at : at + n]
                at += n
                replies[k] = ("ok", ([b for b, _, _ in mine], [p for _, p, _ in mine], [lm for _, _, lm in mine]))
        if onet:
            crops = np.concatenate([requests[k][1] for k in onet])
            reg, points, prob = self.nets.onet(torch.from_numpy(crops), int(requests[onet[0]][2]))
            self.stats["crops"] += len(crops)
            at = 0
            for k in onet:
                n = len(requests[k][1])
                replies[k] = ("ok", (reg[at : at + n], points[at : at + n], prob[at : at + n]))
                at += n


def start_server(cfg, gather_s: float = 0.0) -> DetectorServer:
    """The detector of `cfg` (its networks on cfg.device, run once to set up kernels), served."""
    nets = shared_nets_class(cfg.detector)(cfg.device)
    nets.detect(np.zeros((1, 96, 96, 3), np.uint8), 12)
    return DetectorServer(nets, cfg.detect_batch, gather_s=gather_s)


# -- client (in each worker process) -------------------------------------------------------------


class RemoteNets:
    """Stands in for `MTCNNNets` in a worker: each call is sent to the `DetectorServer` and answered."""

    def __init__(self, address, authkey: bytes, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.address, self.authkey, self.timeout_s = address, authkey, timeout_s
        self._conn = None

    def _call(self, *request):
        from multiprocessing.connection import Client

        if self._conn is None:
            try:
                self._conn = Client(self.address, authkey=self.authkey)
            except Exception as exc:  # noqa: BLE001
                raise DetectorError(f"cannot reach the shared face detector ({type(exc).__name__}: {exc})") from None
        try:
            self._conn.send(request)
            if not self._conn.poll(self.timeout_s):
                self.close()  # a late answer must not be taken for the next request's
                raise DetectorError(f"the shared face detector did not answer within {self.timeout_s:g} s")
            status, payload = self._conn.recv()
        except (EOFError, OSError) as exc:
            self.close()
            raise DetectorError(f"the shared face detector is gone ({type(exc).__name__}); the run is stopping or it crashed") from None
        if status != "ok":
            raise DetectorError(payload)
        return payload

    def detect(self, batch: np.ndarray, min_size: int):
        return self._call("detect", np.ascontiguousarray(batch, dtype=np.uint8), int(min_size))

    def onet(self, crops, min_size: int):
        return self._call("onet", crops.detach().cpu().float().numpy(), int(min_size))

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None


def remote_detector(cfg, client: tuple, timeout_s: float = DEFAULT_TIMEOUT_S):
    """A worker's detector: `cfg.detector` doing its CPU work here and its network passes on the server."""
    from dfpanel.extract.faces import create_detector

    address, authkey = client
    return create_detector(cfg.detector, device="cpu", min_face_size=cfg.min_face_size, max_side=cfg.max_side,
                           batch_size=max(1, cfg.detect_batch), nets=RemoteNets(address, authkey, timeout_s))
