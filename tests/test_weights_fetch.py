"""Published weights by URL: served from a local HTTP server on 127.0.0.1, never the internet."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest

from dfpanel.cli import main
from dfpanel.errors import WeightsError
from dfpanel.models.specialists.base import create_specialist
from dfpanel.weights.install import fetch_weights
from dfpanel.weights.io import file_sha256, load_specialist, save_weights


@pytest.fixture()
def served(tmp_path, monkeypatch):
    """A tiny CM specialist's weights + sidecar behind http://127.0.0.1:PORT/."""
    monkeypatch.setenv("DFPANEL_CACHE", str(tmp_path / "cache"))
    site = tmp_path / "site"
    site.mkdir()
    model = create_specialist("cm", backbone="tiny", image_size=64)
    path = save_weights(model, site / "cm_dfdc_v1.safetensors", {"stage": "dfdc"})
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{path.name}", file_sha256(path), model
    finally:
        server.shutdown()


def test_fetch_installs_weights_named_after_their_specialist(served, tmp_path):
    url, sha, model = served
    installed = fetch_weights(url, sha256=sha, out=tmp_path / "weights", progress=False)
    assert installed == tmp_path / "weights" / "cm.safetensors"
    assert installed.with_suffix(".json").is_file()
    loaded = load_specialist(installed)
    assert loaded.name == "cm"
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert (a == b).all(), k


def test_fetch_refuses_a_wrong_sha256_and_installs_nothing(served, tmp_path):
    url, sha, _ = served
    wrong = ("0" if sha[0] != "0" else "1") + sha[1:]
    with pytest.raises(WeightsError, match="sha256"):
        fetch_weights(url, sha256=wrong, out=tmp_path / "weights", progress=False)
    assert not (tmp_path / "weights").exists()


def test_cli_fetch_bad_url_is_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DFPANEL_CACHE", str(tmp_path / "cache"))
    code = main(["weights", "fetch", "http://127.0.0.1:9/none.safetensors", "--sha256", "ab" * 32, "--out", str(tmp_path / "w")])
    assert code == 2
    err = capsys.readouterr().err
    assert "download failed" in err and "Traceback" not in err
