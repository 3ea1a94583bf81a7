"""ONNX export: onnxruntime matches PyTorch within 1e-4 on a batch size other than the exported one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from factories import SMALL_SPECIALIST

from dfpanel.errors import DataError, WeightsError
from dfpanel.models.specialists import create_specialist
from dfpanel.weights.export import OnnxSpecialist, export_onnx


def _check(name, tmp_path, **kw):
    model = create_specialist(name, **SMALL_SPECIALIST, **kw).train()
    path = export_onnx(model, tmp_path / f"{name}.onnx", batch=2)
    assert model.training  # handed back in the mode it came in
    model.eval()
    meta = json.loads((tmp_path / f"{name}.onnx.json").read_text())
    assert meta["specialist"] == name and meta["max_abs_diff"] <= 1e-4
    runner = OnnxSpecialist(path)
    assert runner.input_names == model.input_names() and runner.name == name
    for batch in (1, 4):
        x = model.example_inputs(batch, seed=batch)
        if name == "av":
            x["audio_mask"] = torch.tensor([1.0, 0.0, 1.0, 0.0][:batch])
        with torch.no_grad():
            ref = model(x)
        got = runner(x)
        assert got["logit"].shape == (batch,)
        np.testing.assert_allclose(got["logit"], ref.logit.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(got["aux_logit"], ref.aux_logit.numpy(), atol=1e-4, rtol=0)
    return runner


def test_av_exports_and_matches_onnxruntime(tmp_path):
    runner = _check("av", tmp_path, mouth_size=32)
    with pytest.raises(DataError, match="inputs lack mel"):
        runner({"face": np.zeros((1, 3, 64, 64)), "mouth": np.zeros((1, 4, 3, 32, 32)), "audio_mask": np.ones(1)})


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bg", "cm", "rr", "tm"])
def test_every_other_specialist_exports_and_matches_onnxruntime(name, tmp_path):
    _check(name, tmp_path)


def test_missing_onnx_file_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        OnnxSpecialist(tmp_path / "none.onnx")
