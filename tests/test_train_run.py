"""Training runs end to end on a tiny fake specialist: outputs, resume, init_from (local and URL),
chunk order and chunk-level resume."""

from __future__ import annotations

import csv
import functools
import http.server
import json
import threading
from pathlib import Path

import pytest
import torch
from factories import cache_on_disk
from safetensors.torch import load_file
from train_fakes import FakeFrameSpecialist, tiny_config

from dfpanel.errors import ConfigError, WeightsError
from dfpanel.train.stage import train_stage
from dfpanel.weights.fetch import resolve_init, sha256_of


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return cache_on_disk(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def trained(cache, tmp_path_factory):
    """One finished run, shared by the tests that need parent weights."""
    out = tmp_path_factory.mktemp("runs") / "parent"
    return train_stage(tiny_config(cache), out, progress=False)


def logged_steps(run_dir: Path) -> list[list[int]]:
    """Training steps logged by each start of the run (one CSV version folder per start)."""
    out = []
    for version in sorted((run_dir / "logs" / "csv").glob("version_*")):
        with open(version / "metrics.csv") as fh:
            out.append([int(r["step"]) for r in csv.DictReader(fh) if r.get("train_loss")])
    return out


def test_tiny_run_learns_and_writes_weights_with_sidecar(trained, cache):
    run = Path(trained["run_dir"])
    assert trained["metrics"]["val_auc"] > 0.9  # bright fakes are learnable in a few steps
    weights = run / "best.safetensors"
    assert weights.is_file() and trained["sha256"] == sha256_of(weights)
    side = json.loads((run / "best.json").read_text())
    for key in ("stage", "config", "manifest_hash", "parent_sha256", "metrics"):
        assert key in side
    assert side["config"]["model"]["specialist"] == "fakeframe"
    assert side["metrics"]["val_auc"] == trained["metrics"]["val_auc"]
    assert len(side["manifest_hash"]) == 64 and side["parent_sha256"] is None
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "logs" / "tb").is_dir()
    state = load_file(str(weights))
    assert set(state) == set(FakeFrameSpecialist().state_dict())
    assert json.loads((run / "result.json").read_text())["global_step"] == trained["global_step"] > 0


def test_resume_continues_the_step_count(cache, tmp_path):
    out = tmp_path / "run"
    first = train_stage(tiny_config(cache, "fakeframe", "trainer.max_steps=4"), out, progress=False)
    assert first["global_step"] == 4
    with pytest.raises(ConfigError, match="already holds a run"):
        train_stage(tiny_config(cache), out, progress=False)
    second = train_stage(tiny_config(cache, "fakeframe", "trainer.max_steps=10"), out, resume=True, progress=False)
    assert second["global_step"] == 10
    before, after = logged_steps(out)
    assert max(before) < 4 <= min(after) and max(after) >= 8  # went on after step 4, never restarted at 0
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 10
    with pytest.raises(ConfigError, match="nothing to resume"):
        train_stage(tiny_config(cache), tmp_path / "empty", resume=True, progress=False)


def test_init_from_local_loads_with_right_sha_and_refuses_a_wrong_one(trained, cache, tmp_path):
    parent = Path(trained["weights"])
    cfg = tiny_config(cache, "fakeframe", f"init_from={parent}", f"init_sha256={trained['sha256']}",
                      "optim.lr=0", "optim.weight_decay=0", "trainer.max_steps=2")
    child = train_stage(cfg, tmp_path / "child", progress=False)
    # lr 0: the child's best weights are exactly the parent's, so they were loaded
    a, b = load_file(str(parent)), load_file(child["weights"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads(Path(child["weights"]).with_suffix(".json").read_text())["parent_sha256"] == trained["sha256"]
    bad = tiny_config(cache, "fakeframe", f"init_from={parent}", "init_sha256=" + "0" * 64)
    with pytest.raises(WeightsError, match="sha256"):
        train_stage(bad, tmp_path / "bad", progress=False)
    by_name = resolve_init("parent", runs_root=parent.parent.parent)  # a previous run's name
    assert by_name == parent


class _Handler(http.server.SimpleHTTPRequestHandler):
    hits: list = []

    def do_GET(self):  # noqa: N802
        _Handler.hits.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.hits = []
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_init_from_url_downloads_once_and_refuses_tampered(trained, cache, tmp_path, http_root, monkeypatch):
    monkeypatch.setenv("DFPANEL_CACHE", str(tmp_path / "dlcache"))
    root, base = http_root
    parent = Path(trained["weights"])
    (root / "cm.safetensors").write_bytes(parent.read_bytes())
    (root / "cm.json").write_bytes(parent.with_suffix(".json").read_bytes())
    url = f"{base}/cm.safetensors"
    path = resolve_init(url, sha256=trained["sha256"], progress=False)
    assert path.is_relative_to(tmp_path / "dlcache") and sha256_of(path) == trained["sha256"]
    assert resolve_init(url, sha256=trained["sha256"], progress=False) == path
    assert _Handler.hits == ["/cm.safetensors"]  # the second call used the cached copy

    tampered = bytearray(parent.read_bytes())
    tampered[-1] ^= 0xFF
    (root / "evil.safetensors").write_bytes(bytes(tampered))
    cfg = tiny_config(cache, "fakeframe", f"init_from={base}/evil.safetensors", f"init_sha256={trained['sha256']}")
    with pytest.raises(WeightsError, match="refusing to load"):
        train_stage(cfg, tmp_path / "evil_run", progress=False)
    assert not list((tmp_path / "dlcache").rglob("evil.safetensors*"))  # nothing tampered is kept
    with pytest.raises(WeightsError, match="download failed"):
        resolve_init(f"{base}/missing.safetensors", progress=False)


def _brightness_model() -> FakeFrameSpecialist:
    """Weights that call bright crops fake, without training."""
    m = FakeFrameSpecialist()
    with torch.no_grad():
        m.body[0].weight.fill_(1 / 27)
        m.body[0].bias.zero_()
        m.head.weight.fill_(10.0)
        m.head.bias.fill_(-0.5)
    return m


def test_auto_chunk_order_puts_the_easiest_chunk_first(tmp_path):
    from dfpanel.train.chunks import auto_chunk_order
    from dfpanel.weights.io import save_weights

    cache = cache_on_disk(tmp_path / "dfdc", dataset="dfdc", chunks=3, invert_chunks=(0, 2),
                       counts={"train": (6, 6), "val": (2, 2)})
    path = save_weights(_brightness_model(), tmp_path / "w.safetensors", {"stage": "test"})
    cfg = tiny_config(cache, "fakeframe", "data.chunks=[0, 1, 2]")
    order, losses = auto_chunk_order(cfg, [0, 1, 2], Path(path))
    assert order[0] == 1  # the only chunk whose fakes are bright, as the weights expect
    assert losses[1] < min(losses[0], losses[2])


def test_chunked_stage_records_progress_and_resumes_at_the_unfinished_chunk(tmp_path):
    cache = cache_on_disk(tmp_path / "dfdc", dataset="dfdc", chunks=2, counts={"train": (4, 4), "val": (2, 2)})
    out = tmp_path / "stage"
    base = ["data.chunked=true", "data.chunk_order=given", "data.chunks=[1, 0]", "trainer.max_epochs=1"]
    result = train_stage(tiny_config(cache, "fakeframe", *base), out, progress=False)
    progress = json.loads((out / "progress.json").read_text())
    assert progress["order"] == [1, 0] and progress["done"] == [1, 0]
    assert result["chunk_order"] == [1, 0] and (out / "best.safetensors").is_file()
    # chunk 0 trained from chunk 1's best weights
    run0 = json.loads((out / "chunk_0" / "run.json").read_text())
    assert run0["parent_sha256"] == progress["results"]["1"]["sha256"]

    # simulate a kill during chunk 0: unfinished in progress.json, its last.ckpt kept
    step0 = progress["results"]["0"]["global_step"]
    progress["done"] = [1]
    del progress["results"]["0"]
    (out / "progress.json").write_text(json.dumps(progress))
    (out / "chunk_0" / "result.json").unlink()
    (out / "result.json").unlink()
    chunk1_mtime = (out / "chunk_1" / "best.safetensors").stat().st_mtime_ns
    again = train_stage(tiny_config(cache, "fakeframe", *base, "trainer.max_epochs=2"), out, resume=True, progress=False)
    assert json.loads((out / "progress.json").read_text())["done"] == [1, 0]
    assert again["global_step"] > step0  # chunk 0 went on from its step, not from 0
    assert (out / "chunk_1" / "best.safetensors").stat().st_mtime_ns == chunk1_mtime  # chunk 1 not redone
