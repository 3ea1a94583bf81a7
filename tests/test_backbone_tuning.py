"""Light tuning of a transformer backbone: `tuning` full / layernorm / svd_residual inside a real specialist.

A tiny random ViT (timm vit_tiny_patch16_224 shrunk by `backbone_args`, pretrained=False) stands in for CLIP.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from dfpanel.errors import ConfigError
from dfpanel.models.specialists import create_specialist
from dfpanel.models.svd_residual import SVDResidualLinear, skip_svd, svd_regularization
from dfpanel.train.config import load_stage_config
from dfpanel.train.module import SpecialistModule
from dfpanel.weights.io import load_specialist, save_weights

VIT = "vit_tiny_patch16_224"
DEPTH = 2
ARGS = {"depth": DEPTH, "embed_dim": 64, "num_heads": 2, "patch_size": 8}
SVD_NAMES = ("U_res", "S_res", "V_res")


def build(tuning: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return create_specialist("bg", backbone=VIT, image_size=64, tuning=tuning, backbone_args=ARGS, **kw).eval()


def layernorm_params(model) -> set[str]:
    return {
        f"{mod_name}.{p_name}"
        for mod_name, mod in model.named_modules()
        if isinstance(mod, nn.LayerNorm)
        for p_name, _ in mod.named_parameters(recurse=False)
    }


def intended_trainable(model, tuning: str) -> set[str]:
    names = {n for n, _ in model.named_parameters()}
    outside = {n for n in names if not n.startswith("backbone.")}
    if tuning == "full":
        return names
    if tuning == "layernorm":
        return outside | {n for n in layernorm_params(model) if n.startswith("backbone.")}
    return outside | {n for n in names if n.startswith("backbone.") and n.rsplit(".", 1)[-1] in SVD_NAMES}


def backward_once(model) -> None:
    out = model(model.example_inputs(2))
    (out.logit.sum() + out.aux_logit.sum()).backward()


@pytest.mark.parametrize("tuning", ["full", "layernorm", "svd_residual"])
def test_exactly_the_intended_parameters_get_gradients(tuning):
    model = build(tuning)
    backward_once(model)
    want = intended_trainable(model, tuning)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trainable == want and with_grad == want
    assert any(n.startswith("backbone.") for n in want)
    assert any(n.startswith("module.") for n in want) and any(n.startswith("fusion.") for n in want)
    if tuning == "layernorm":
        assert {n for n in want if n.startswith("backbone.")} == {n for n in layernorm_params(model) if n.startswith("backbone.")}
    if tuning == "svd_residual":
        assert sum(isinstance(m, SVDResidualLinear) for m in model.modules()) == 4 * DEPTH  # qkv, proj, fc1, fc2


def test_svd_split_reconstructs_the_weights_and_the_outputs():
    full, svd = build("full"), build("svd_residual")
    layers = {n: m for n, m in svd.named_modules() if isinstance(m, SVDResidualLinear)}
    assert len(layers) == 4 * DEPTH
    for name, layer in layers.items():
        original = full.get_submodule(name)
        assert isinstance(original, nn.Linear)
        with torch.no_grad():
            err = (layer.effective_weight() - original.weight).abs().max()
        # documented tolerance: float32 rounding of the float64 split
        assert err <= 1e-6 * original.weight.abs().max(), name
        assert torch.equal(layer.bias, original.bias)
        assert not layer.weight_main.requires_grad and layer.U_res.shape == (layer.out_features, 1)
    x = full.example_inputs(2)
    with torch.no_grad():
        a, b = full(x), svd(x)
    torch.testing.assert_close(b.logit, a.logit, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.aux_logit, a.aux_logit, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tuning", ["layernorm", "svd_residual"])
def test_one_step_then_save_and_load_changes_only_the_tuned_tensors(tuning, tmp_path):
    model = build(tuning, svd_residual_rank=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    backward_once(model)  # eval mode: no BatchNorm statistics move, so only parameters can change
    opt.step()

    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed == trainable
    assert all(torch.equal(after[k], before[k]) for k in after if k.startswith("backbone.") and k not in trainable)

    path = save_weights(model, tmp_path / "bg_clip")
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["model_config"]["tuning"] == tuning and sidecar["model_config"]["backbone_args"] == ARGS
    assert sidecar["model_config"]["svd_residual_rank"] == 2
    rebuilt = load_specialist(path)
    assert rebuilt.config == model.config
    x = model.example_inputs(2, seed=3)
    with torch.no_grad():
        assert torch.equal(rebuilt(x).logit, model(x).logit)
    assert {n for n, p in rebuilt.named_parameters() if p.requires_grad} == trainable


def test_skip_svd_builds_placeholders_of_the_same_shapes():
    linear = nn.Linear(12, 8)
    with skip_svd():
        fast = SVDResidualLinear(linear, rank=2)
    split = SVDResidualLinear(linear, rank=2)
    assert {k: v.shape for k, v in fast.state_dict().items()} == {k: v.shape for k, v in split.state_dict().items()}
    assert not fast.weight_main.any()
    fast.load_state_dict(split.state_dict())
    x = torch.randn(3, 12)
    assert torch.equal(fast(x), split(x))


def test_regularization_is_zero_at_the_split_and_grows_with_a_leak_into_the_main_subspace():
    torch.manual_seed(1)
    layer = SVDResidualLinear(nn.Linear(12, 8), rank=2)
    assert layer.regularization_loss() < 1e-10
    main_dir = torch.linalg.svd(layer.weight_main)[0][:, :1]  # a direction of the frozen subspace
    with torch.no_grad():
        layer.U_res[:, :1] += 0.3 * main_dir
    loss = layer.regularization_loss()
    assert loss > 1e-3
    loss.backward()
    assert layer.U_res.grad is not None and layer.U_res.grad.abs().sum() > 0


def test_the_training_loss_adds_the_weighted_svd_penalty_only_when_asked():
    model = build("svd_residual")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SVDResidualLinear):
                m.U_res.mul_(1.5)
    reg = svd_regularization(model)
    assert reg > 0
    assert SpecialistModule("bg", model=model).tuning_penalty() == 0.0
    on = SpecialistModule("bg", model=model, optim={"svd_orth_weight": 0.5}).tuning_penalty()
    torch.testing.assert_close(on, 0.5 * reg)
    assert SpecialistModule("bg", model=build("full"), optim={"svd_orth_weight": 0.5}).tuning_penalty() == 0.0


@pytest.mark.parametrize("tuning", ["layernorm", "svd_residual"])
def test_a_cnn_backbone_refuses_light_tuning_in_one_line(tuning):
    with pytest.raises(ConfigError, match="use a ViT or tuning full") as err:
        create_specialist("bg", backbone="tiny", image_size=64, tuning=tuning)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tuning": "lora"}, r"unknown tuning 'lora'"),
        ({"tuning": "full", "backbone_args": {"depthh": 2}}, r"backbone_args .* do not fit"),
        ({"tuning": "full", "backbone_args": {**ARGS, "img_size": 32}}, r"may not set img_size"),
        ({"tuning": "full", "backbone_args": [1]}, r"backbone_args must be a mapping"),
        ({"tuning": "svd_residual", "backbone_args": ARGS, "svd_residual_rank": 0}, r"svd_residual_rank must be"),
        ({"tuning": "svd_residual", "backbone_args": ARGS, "svd_residual_rank": 65}, r"between 1 and 64"),
    ],
)
def test_bad_tuning_options_are_config_errors(kwargs, message):
    kwargs = {"backbone_args": ARGS, **kwargs}
    with pytest.raises(ConfigError, match=message):
        create_specialist("bg", backbone=VIT, image_size=64, **kwargs)


def test_defaults_keep_todays_model():
    model = create_specialist("bg", backbone="tiny", image_size=64)
    assert model.config["tuning"] == "full" and model.config["backbone_args"] == {} and model.config["svd_residual_rank"] == 1
    assert all(p.requires_grad for p in model.parameters())


def test_model_config_carries_the_tuning_keys():
    cfg = load_stage_config(
        "bg/tiny_ffpp", ["model.tuning=svd_residual", "model.backbone_args={depth: 2, embed_dim: 64}", "model.svd_residual_rank=4",
                         "optim.svd_orth_weight=0.1"]
    )
    kw = cfg.model.kwargs()
    assert kw["tuning"] == "svd_residual" and kw["backbone_args"] == {"depth": 2, "embed_dim": 64} and kw["svd_residual_rank"] == 4
    assert cfg.optim.svd_orth_weight == pytest.approx(0.1)
    assert "tuning" not in load_stage_config("bg/tiny_ffpp").model.kwargs()


@pytest.mark.parametrize("spec", ["bg", "av", "cm", "rr", "tm"])
def test_clip_presets_load_with_a_light_tuning(spec):
    lrs = []
    for stage in ("ffpp", "celebdf", "dfdc"):
        cfg = load_stage_config(f"{spec}/{stage}_clip")
        base = load_stage_config(f"{spec}/{stage}")
        assert cfg.model.specialist == spec and cfg.stage == stage and cfg.data.dataset == stage
        assert cfg.model.backbone == "vit_base_patch16_clip_224.openai" and cfg.model.pretrained and cfg.model.image_size == 224
        assert cfg.model.tuning in ("layernorm", "svd_residual")
        assert cfg.data.chunked == base.data.chunked and cfg.augment == base.augment and cfg.name == f"{spec}_{stage}_clip"
        lrs.append(cfg.optim.lr)
    assert lrs[0] > lrs[1] > lrs[2] and lrs[0] <= 2e-4
