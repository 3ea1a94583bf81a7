"""Reliability of `dfpanel weights fetch`, weights folders and `dfpanel index` (issue #11): hostile
sidecars, symlinked dataset trees, bad --out paths, and fuzzed dataset metadata. Every user mistake is a
one-line DfpanelError naming the file; anything else is a bug."""

from __future__ import annotations

import functools
import http.server
import json
import logging
import os
import threading
from pathlib import Path

import pytest

from dfpanel.cli import main
from dfpanel.errors import DataError, DfpanelError, WeightsError

# --------------------------------------------------------------------------------- weights fetch


@pytest.fixture(scope="module")
def cm_weights(tmp_path_factory):
    """A tiny CM specialist saved once: (path, sidecar dict)."""
    from dfpanel.models.specialists.base import create_specialist
    from dfpanel.weights.io import save_weights

    folder = tmp_path_factory.mktemp("cm")
    path = save_weights(create_specialist("cm", backbone="tiny", image_size=64), folder / "cm_v1.safetensors",
                        {"stage": "dfdc"})
    return path, json.loads(path.with_suffix(".json").read_text())


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args, **kwargs):
        pass


@pytest.fixture()
def site(tmp_path, monkeypatch, cm_weights):
    """Serve a folder on 127.0.0.1: (folder, base URL, sha256 of the weights). The cache is per test."""
    from dfpanel.weights.io import file_sha256

    monkeypatch.setenv("DFPANEL_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "site"
    folder.mkdir()
    path, _ = cm_weights
    (folder / path.name).write_bytes(path.read_bytes())
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}", file_sha256(path)
    finally:
        server.shutdown()
        server.server_close()


def _publish_sidecar(folder: Path, cm_weights, name: str, **changes) -> str:
    _, side = cm_weights
    (folder / name).write_text(json.dumps({**side, **changes}))
    return name


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_fetch_refuses_a_sidecar_specialist_that_is_a_path(site, cm_weights, tmp_path, capsys):
    folder, base, sha = site
    side = _publish_sidecar(folder, cm_weights, "evil.json", specialist="../../x")
    out = tmp_path / "a" / "b" / "weights"
    code = main(["weights", "fetch", f"{base}/cm_v1.safetensors", "--sha256", sha, "--out", str(out),
                 "--sidecar-url", f"{base}/{side}"])
    assert code == 2
    err = _one_line_error(capsys)
    assert "evil.json" in err and "'../../x'" in err and "not one of" in err
    assert not list(tmp_path.rglob("x.json")) and not list(tmp_path.rglob("x.safetensors"))
    assert not out.exists()


def test_fetch_refuses_a_sidecar_that_disagrees_with_the_weights_header(site, cm_weights, tmp_path):
    from dfpanel.weights.install import fetch_weights

    folder, base, sha = site
    side = _publish_sidecar(folder, cm_weights, "bg.json", specialist="bg")
    with pytest.raises(WeightsError, match=r"bg\.json: sidecar names specialist 'bg' but the weights .* hold 'cm'"):
        fetch_weights(f"{base}/cm_v1.safetensors", sha256=sha, out=tmp_path / "w", sidecar_url=f"{base}/{side}",
                      progress=False)
    assert not (tmp_path / "w").exists()


def test_fetch_installs_under_the_registry_name(site, cm_weights, tmp_path):
    from dfpanel.weights.install import fetch_weights

    folder, base, sha = site
    side = _publish_sidecar(folder, cm_weights, "upper.json", specialist="CM")
    installed = fetch_weights(f"{base}/cm_v1.safetensors", sha256=sha, out=tmp_path / "w",
                              sidecar_url=f"{base}/{side}", progress=False)
    assert installed == tmp_path / "w" / "cm.safetensors" and sorted(os.listdir(tmp_path / "w")) == ["cm.json", "cm.safetensors"]


def test_fetch_out_that_is_a_file_is_one_line(site, cm_weights, tmp_path, capsys):
    folder, base, sha = site
    _publish_sidecar(folder, cm_weights, "cm_v1.json")
    out = tmp_path / "weights"
    out.write_text("not a folder")
    assert main(["weights", "fetch", f"{base}/cm_v1.safetensors", "--sha256", sha, "--out", str(out)]) == 2
    assert str(out) in _one_line_error(capsys)


# ------------------------------------------------------------------------ wrong specialist in a sidecar


@pytest.fixture()
def weights_folder(tmp_path, cm_weights):
    path, side = cm_weights
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "cm.safetensors").write_bytes(path.read_bytes())
    return folder, side


@pytest.mark.parametrize("named", ["bg", "cmx"])
def test_a_sidecar_naming_the_wrong_specialist_names_the_file(weights_folder, named):
    from dfpanel.inference.runners import load_runners
    from dfpanel.weights.io import load_specialist

    folder, side = weights_folder
    (folder / "cm.json").write_text(json.dumps({**side, "specialist": named}))
    for load in (lambda: load_specialist(folder / "cm.safetensors"), lambda: load_runners(folder)):
        with pytest.raises(WeightsError) as exc:
            load()
        msg = str(exc.value)
        assert str(folder / "cm.json") in msg and f"'{named}'" in msg and "\n" not in msg


def test_cli_detect_with_a_wrong_sidecar_is_one_line(weights_folder, tmp_path, capsys):
    folder, side = weights_folder
    (folder / "cm.json").write_text(json.dumps({**side, "specialist": "cmx"}))
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    code = main(["detect", str(video), "--weights", str(folder)])
    assert code == 2
    assert "cm.json" in _one_line_error(capsys)
