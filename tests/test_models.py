"""The five specialists: shapes, views into forward, gradients, masked audio, config, backbone."""

from __future__ import annotations

import pytest
import torch
from factories import SMALL_SPECIALIST, memory_entry, voice
from torch.utils.data import default_collate

from dfpanel.errors import ConfigError, WeightsError
from dfpanel.models.backbone import Backbone, GridPool
from dfpanel.models.specialists import create_specialist, list_specialists

AV_SMALL = {"mouth_size": 32}
MODULE_CHANNELS = {"bg": 32, "av": 48, "cm": 40, "rr": 32, "tm": 32}
NAMES = sorted(MODULE_CHANNELS)


def small(name, **kw):
    return create_specialist(name, **{**SMALL_SPECIALIST, **(AV_SMALL if name == "av" else {}), **kw})


def test_registry_lists_the_five():
    # Other tests register stand-in specialists; the package itself must bring exactly these five.
    from dfpanel.models.specialists.base import specialist_class

    builtin = [n for n in list_specialists() if specialist_class(n).__module__.startswith("dfpanel.models.specialists.")]
    assert builtin == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_shapes_of_every_specialist_with_the_tiny_backbone(name):
    model = small(name).eval()
    x = model.example_inputs(3)
    assert list(x) == model.input_names()
    with torch.no_grad():
        out = model(x)
        evidence = model.module(x)
        features = model.backbone(model.backbone_image(x))
    assert out.logit.shape == (3,) and out.aux_logit.shape == (3,)
    assert torch.isfinite(out.logit).all() and torch.isfinite(out.aux_logit).all()
    assert evidence.shape == (3, MODULE_CHANNELS[name], 7, 7)
    assert features.shape == (3, model.backbone.channels, 7, 7)


def test_av_and_cm_feature_counts():
    assert small("av").module_channels * 49 == 2352
    assert small("cm").module_channels * 49 == 1960


def test_efficientnet_b4_shapes():
    for name in ("cm", "av"):
        model = create_specialist(name, backbone="efficientnet_b4", clip_len=2).eval()
        maps = {}
        model.backbone.register_forward_hook(lambda m, i, o: maps.__setitem__("backbone", o))
        model.module.register_forward_hook(lambda m, i, o: maps.__setitem__("module", o))
        with torch.no_grad():
            out = model(model.example_inputs(1))
        assert maps["backbone"].shape == (1, 1792, 7, 7)
        assert maps["module"].flatten(1).shape[1] == {"cm": 1960, "av": 2352}[name]
        assert out.logit.shape == (1,) and out.aux_logit.shape == (1,)


@pytest.mark.parametrize("name", NAMES)
def test_view_of_a_cache_entry_feeds_forward(name):
    audio = voice(2.0, [(0.0, 0.4)])  # speech over the clip: AV's gate lets it use the audio
    entry, _ = memory_entry(n_frames=8, audio=audio, clip_len=4)
    model = small(name, cm_size=64) if name == "cm" else small(name)
    positions = entry.clips()[0] if model.sample_kind == "clip" else [2]
    sample = model.view(entry, positions)
    assert {k: tuple(v.shape) for k, v in sample.items()} == model.input_shapes(model.config)
    assert all(v.dtype == torch.float32 for v in sample.values())
    # the picklable view function gives the same tensors
    again = model.view_fn()(entry, positions)
    assert all(torch.equal(sample[k], again[k]) for k in sample)
    with torch.no_grad():
        out = model.eval()(default_collate([sample, sample]))
    assert out.logit.shape == (2,) and torch.isfinite(out.logit).all()
    if name == "av":
        assert out.info["audio_used"].tolist() == [True, True]


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_branch(name):
    model = small(name).train()
    out = model(model.example_inputs(2))
    (out.logit.sum() + out.aux_logit.sum()).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"no gradient reaches: {dead[:5]}"
    branches = {n.split(".")[1] for n, _ in model.module.named_parameters(prefix="module")}
    assert len(branches) == 4  # the four analyzers of DESIGN.md's table


def test_masked_audio_keeps_the_visual_path_and_silences_the_audio_branches():
    model = small("av").train()
    x = model.example_inputs(2)
    x["audio_mask"] = torch.zeros(2)
    out = model(x)
    (out.logit.sum() + out.aux_logit.sum()).backward()
    grads = {n: (p.grad is not None and p.grad.abs().sum().item() > 0) for n, p in model.named_parameters()}
    visual = [n for n in grads if n.startswith(("module.lips.", "backbone.", "fusion."))]
    audio = [n for n in grads if n.startswith(("module.voice.", "module.audio_rhythm.", "module.correlation."))]
    assert visual and audio
    assert all(grads[n] for n in visual), [n for n in visual if not grads[n]][:5]
    assert not any(grads[n] for n in audio), [n for n in audio if grads[n]][:5]
    assert out.info["audio_used"].tolist() == [False, False]


def test_masked_audio_ignores_the_spectrogram_and_unmasked_audio_does_not():
    model = small("av").eval()
    x = model.example_inputs(2)
    other = dict(x, mel=torch.randn_like(x["mel"]) * 5)
    with torch.no_grad():
        assert not torch.allclose(model(x).logit, model(other).logit)  # audio used
        x["audio_mask"] = other["audio_mask"] = torch.zeros(2)
        torch.testing.assert_close(model(x).logit, model(other).logit)  # audio ignored


@pytest.mark.parametrize("name", ["cm", "tm"])
def test_config_rebuilds_the_same_model(name):
    model = small(name, dropout=0.1).eval()
    assert model.config["dropout"] == 0.1 and model.config["backbone"] == "tiny"
    twin = create_specialist(name, **model.config).eval()
    twin.load_state_dict(model.state_dict())
    x = model.example_inputs(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x).logit, twin(x).logit)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="unknown option"):
        small("bg", cm_size=64)  # CM's option, not BG's
    with pytest.raises(ConfigError, match="unknown specialist"):
        create_specialist("xx")
    with pytest.raises(ConfigError, match="unknown backbone"):
        small("bg", backbone="no_such_net")
    with pytest.raises(ConfigError, match="cm_size"):
        small("cm", cm_size=100)


@pytest.mark.parametrize("shape", [(4, 4), (13, 9), (14, 14), (7, 7), (3, 5)])
def test_grid_pool_equals_adaptive_average_pooling(shape):
    x = torch.randn(2, 3, *shape)
    torch.testing.assert_close(GridPool(7)(x), torch.nn.functional.adaptive_avg_pool2d(x, 7))


def test_backbone_loads_pretrained_weights_from_a_local_file(tmp_path):
    from safetensors.torch import save_file

    source = Backbone("tiny")
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.net.state_dict().items()}, str(path))
    loaded = Backbone("tiny", pretrained_path=str(path))
    fresh = Backbone("tiny")
    key = "conv_stem.weight"
    assert torch.equal(loaded.net.state_dict()[key], source.net.state_dict()[key])
    assert not torch.equal(fresh.net.state_dict()[key], source.net.state_dict()[key])
    with pytest.raises(WeightsError, match="not found"):
        Backbone("tiny", pretrained_path=str(tmp_path / "missing.safetensors"))


@pytest.mark.parametrize("backbone,channels", [("test_vit", 64), ("test_convnext", 64), ("test_resnet", 96)])
def test_other_timm_backbones_by_name(backbone, channels):
    model = small("cm", backbone=backbone).eval()
    x = model.example_inputs(2)
    with torch.no_grad():
        assert model.backbone(x["face"]).shape == (2, channels, 7, 7)
        assert model(x).logit.shape == (2,)


def test_channels_last_gives_the_same_output():
    model = small("bg").eval()
    x = model.example_inputs(2)
    with torch.no_grad():
        ref = model(x).logit
        model = model.to(memory_format=torch.channels_last)
        got = model({k: v.contiguous(memory_format=torch.channels_last) for k, v in x.items()}).logit
    torch.testing.assert_close(ref, got, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["av", "tm"])
def test_mixed_precision_forward_and_backward_stay_finite(name):
    model = small(name).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(model.example_inputs(2))
    (out.logit.float().sum() + out.aux_logit.float().sum()).backward()
    assert torch.isfinite(out.logit.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_forward_compiles_as_one_graph(name):
    """torch.compile friendly: no data-dependent Python control flow, so dynamo sees one graph."""
    model = small(name).eval()
    explained = torch._dynamo.explain(model)(model.example_inputs(2))
    assert explained.graph_break_count == 0, explained.break_reasons[:2]
    assert explained.graph_count == 1


def test_tm_landmark_jitter_branch_speaks_as_loud_as_the_others():
    """Landmark jitter is ~1e-2 face boxes; unnormalised, that branch's output varied ~1000x less across
    clips than the image branches', so fusion never heard it and TM missed temporal_jitter fakes."""
    model = small("tm").train()
    x = model.example_inputs(16)
    t = x["landmarks"].shape[1]
    steady = torch.linspace(0.3, 0.7, 10).repeat(16, t, 1) + torch.linspace(0, 0.02, t)[None, :, None]  # slow head motion
    shaky = torch.randn(16, t, 10) * 0.02 * (torch.arange(16) % 2)[:, None, None]  # every other clip jitters
    x["landmarks"] = steady + shaky
    with torch.no_grad():
        out = model.module(x)
    per_branch = out.reshape(16, 4, -1).std(dim=0).mean(dim=1)  # how much each branch varies across clips
    jitter = per_branch[2]  # texture, flicker, jitter, motion boundary
    assert jitter > 0.2 * per_branch.max(), per_branch.tolist()
