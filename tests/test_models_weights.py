"""Weights on disk: safetensors + sidecar round trip, and every refusal a user can meet."""

from __future__ import annotations

import json

import pytest
import torch
from factories import SMALL_SPECIALIST

from dfpanel.errors import WeightsError
from dfpanel.models.specialists import create_specialist
from dfpanel.weights.io import file_sha256, load_specialist, load_weights, save_weights


@pytest.fixture
def saved_cm(tmp_path):
    model = create_specialist("cm", **SMALL_SPECIALIST).eval()
    path = save_weights(model, tmp_path / "cm_stage1", {"stage": "ffpp", "parent_sha256": None, "metrics": {"auc": 0.5}})
    return model, path


def test_round_trip_rebuilds_the_same_model(saved_cm):
    model, path = saved_cm
    assert path.name == "cm_stage1.safetensors" and path.is_file()
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["specialist"] == "cm" and sidecar["stage"] == "ffpp" and sidecar["metrics"] == {"auc": 0.5}
    assert sidecar["model_config"] == model.config
    assert sidecar["sha256"] == file_sha256(path)
    assert sidecar["version"]

    state, side = load_weights(path, expected_specialist="cm", expected_sha256=sidecar["sha256"])
    assert set(state) == set(model.state_dict()) and side["stage"] == "ffpp"

    rebuilt = load_specialist(path)
    assert not rebuilt.training and rebuilt.config["image_size"] == 64
    x = model.example_inputs(2)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x).logit, model(x).logit)


def test_a_specialist_refuses_weights_made_for_another(saved_cm):
    _, path = saved_cm
    with pytest.raises(WeightsError) as err:
        load_weights(path, expected_specialist="bg")
    msg = str(err.value)
    assert "cm_stage1.safetensors" in msg and "'cm'" in msg and "'bg'" in msg and "\n" not in msg
    with pytest.raises(WeightsError, match="made for specialist 'cm'"):
        load_specialist(path, expected_specialist="tm")


def test_other_specialist_is_caught_even_without_the_sidecar(saved_cm):
    _, path = saved_cm
    path.with_suffix(".json").unlink()
    with pytest.raises(WeightsError, match="made for specialist 'cm'"):
        load_weights(path, expected_specialist="av")
    with pytest.raises(WeightsError, match="no sidecar"):
        load_specialist(path)


def test_sha256_mismatch_and_tampering_are_refused(saved_cm):
    _, path = saved_cm
    with pytest.raises(WeightsError, match="does not match the expected"):
        load_weights(path, expected_sha256="0" * 64)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # flip bits inside the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="do not match the sha256"):
        load_weights(path)


def test_pickles_and_missing_files_are_refused(tmp_path):
    pickle_file = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, pickle_file)
    with pytest.raises(WeightsError, match="not a safetensors"):
        load_weights(pickle_file)
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "nothing.safetensors")


def test_weights_for_another_shape_of_model_are_refused(saved_cm):
    _, path = saved_cm
    with pytest.raises(WeightsError, match="do not fit"):
        load_specialist(path, fusion_dim=64, fusion_heads=4)
