"""Shared test set-up."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    # One intra-op thread per test: the models and MTCNN here are small, and on a 2-core machine
    # oversubscribed OpenMP threads spin and run 10-20x slower. A fixed seed keeps random init repeatable.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fake_weights(monkeypatch, tmp_path):
    """`--weights DIR` loads the stand-in specialists (tests/detect_fakes.py); extraction is the
    in-memory fake. For CLI tests of `detect` that need no trained model."""
    from detect_fakes import fake_extract, fake_runners

    from dfpanel.detect.pipeline import PanelDetector
    from dfpanel.inference import runners as runners_mod

    wdir = tmp_path / "weights"
    wdir.mkdir()
    # build_detector imports it when called (so `dfpanel serve`'s web process loads no model code)
    monkeypatch.setattr(runners_mod, "load_runners", lambda folder, backend="torch", device="cpu", only=None: fake_runners())
    real_init = PanelDetector.__init__

    def init(self, runners, panel, cfg=None, extract=None):
        real_init(self, runners, panel, cfg, extract or fake_extract)

    monkeypatch.setattr(PanelDetector, "__init__", init)
    return wdir
