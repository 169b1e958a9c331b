"""Behaviour of the generator beyond the shared fixtures: other configs, S space, transforms, hooks."""
import numpy as np
import pytest
import torch

import sg3probe
from sg3probe.models.architecture import stylegan3_config
from sg3probe.models.generator import Generator
from sg3probe.models.ops import use_reference_ops


def _random_generator(seed=0, **config):
    """A generator with non-trivial biases, input affine and EMAs, like the conformance nets."""
    torch.manual_seed(seed)
    G = Generator(stylegan3_config(**config)).eval().requires_grad_(False)
    with torch.no_grad():
        G.synthesis.input.affine.weight.normal_(0, 0.25)
        G.synthesis.input.affine.bias.add_(torch.randn(4) * 0.05)
        for name in G.synthesis.layer_names:
            layer = getattr(G.synthesis, name)
            layer.bias.normal_(0, 0.1)
            layer.affine.bias.add_(torch.randn_like(layer.affine.bias) * 0.1)
            layer.magnitude_ema.fill_(float(torch.empty(()).uniform_(0.5, 1.6)))
        G.mapping.w_avg.normal_(0, 1)
        for index in range(G.mapping.num_layers):
            getattr(G.mapping, f"fc{index}").bias.normal_(0, 10)
    return G


FAMILY = {
    "t32-conditional": dict(cfg="stylegan3-t", img_resolution=32, channel_base=1024, channel_max=32, c_dim=5),
    "t64-one-channel": dict(cfg="stylegan3-t", img_resolution=64, channel_base=512, channel_max=24, img_channels=1),
    "t64-small-w": dict(cfg="stylegan3-t", img_resolution=64, channel_base=2048, channel_max=48, z_dim=64, w_dim=96),
    "r128": dict(cfg="stylegan3-r", img_resolution=128, channel_base=512, channel_max=16),
    "t16-rgba": dict(cfg="stylegan3-t", img_resolution=16, channel_base=1024, channel_max=32, img_channels=4, num_layers=10),
}


@pytest.mark.parametrize("name", list(FAMILY))
def test_family_fast_ops_equal_naive_reference(name):
    """Our matrix-based filtered lrelu and activation-modulated conv equal NVIDIA's naive formulation."""
    kwargs = dict(FAMILY[name])
    cfg = kwargs.pop("cfg")
    G = _random_generator(cfg=cfg, **kwargs)
    z = torch.randn(3, G.z_dim)
    c = torch.nn.functional.one_hot(torch.tensor([0, 2, 4]), G.c_dim).float() if G.c_dim else None
    ws = G.mapping(z, c, truncation_psi=0.8)
    assert ws.shape == (3, G.num_ws, G.w_dim)
    transform = sg3probe.inverse_transform((0.1, -0.05), 17.0)
    fast = G.synthesis(ws, transform=transform)
    with use_reference_ops(G):
        naive = G.synthesis(ws, transform=transform)
    assert fast.shape == (3, G.img_channels, G.img_resolution, G.img_resolution)
    scale = naive.abs().max().item()
    assert scale > 1e-2  # the comparison means something
    np.testing.assert_allclose(fast.numpy(), naive.numpy(), atol=1e-4 * max(1.0, scale))


def test_conditional_mapping_uses_the_label():
    G = _random_generator(cfg="stylegan3-t", img_resolution=16, channel_base=256, channel_max=8, c_dim=3, num_layers=6)
    z = torch.randn(1, G.z_dim).repeat(2, 1)
    c = torch.eye(3)[:2]
    ws = G.mapping(z, c)
    assert not torch.allclose(ws[0], ws[1])
    with pytest.raises(ValueError, match="conditional"):
        G.mapping(z, None)


def test_synthesis_from_styles_equals_synthesis_from_ws(t64):
    G = t64.generator_from_weights()
    ws = torch.from_numpy(t64.reference["ws_psi0.7"])
    styles = G.styles(ws)
    assert list(styles) == ["input"] + G.synthesis.layer_names
    assert styles["input"].shape == (4, 4)
    np.testing.assert_allclose(styles["input"][:, :2].norm(dim=1).numpy(), 1.0, rtol=1e-6)
    torch.testing.assert_close(G.synthesis(styles=styles), G.synthesis(ws), rtol=0, atol=0)
    with pytest.raises(ValueError, match="exactly one"):
        G.synthesis(ws, styles=styles)


def test_per_sample_transforms_equal_one_at_a_time(r64):
    G = r64.generator_from_weights()
    ws = torch.from_numpy(r64.reference["ws_psi1"])
    transforms = torch.stack([sg3probe.inverse_transform((0.1 * i, -0.05 * i), 20.0 * i - 30) for i in range(4)])
    batch = G.synthesis(ws, transform=transforms)
    for i in range(4):
        single = G.synthesis(ws[i:i + 1], transform=transforms[i])
        np.testing.assert_allclose(batch[i].numpy(), single[0].numpy(), atol=1e-5)
    # Different transforms give different images (the argument is used per sample).
    assert (batch[0] - batch[3]).abs().max() > 0.1


def test_run_with_cache_and_hooks_edit_and_clean_up(t64):
    G = t64.generator_from_weights()
    ws = torch.from_numpy(t64.reference["ws_psi1"][:2])
    names = ["styles.L3_36_32", "features.L5_52_32", "image"]
    images, cache = G.run_with_cache(ws, names)
    assert set(cache) == set(names)
    assert cache["features.L5_52_32"].shape == (2, 32, 52, 52)
    torch.testing.assert_close(cache["image"], images)

    def zero_channel(value, name):
        value = value.clone()
        value[:, 7] = 0
        return value

    with G.hooks({"styles.L3_36_32": zero_channel}):
        edited = G.synthesis(ws)
    assert (edited - images).abs().max() > 1e-3
    # An edit through S gives the same result as the hook.
    styles = G.styles(ws)
    styles["L3_36_32"] = zero_channel(styles["L3_36_32"], "")
    torch.testing.assert_close(G.synthesis(styles=styles), edited)

    with pytest.raises(RuntimeError, match="boom"):
        with G.hooks({"features.L0_36_32": lambda v, n: (_ for _ in ()).throw(RuntimeError("boom"))}):
            G.synthesis(ws)
    assert all(not point._forward_hooks for point in G.hook_points.values())
    torch.testing.assert_close(G.synthesis(ws), images)
    with pytest.raises(KeyError, match="unknown hook point"):
        G.run_with_cache(ws, ["features.nope"])
    with pytest.raises(ValueError, match="mapping.w never fires here"):  # it fires in G.mapping, before ws
        G.run_with_cache(ws, ["mapping.w", "image"])
    _, everything = G.run_with_cache(ws)
    assert "image" in everything and not any(name.startswith("mapping.") for name in everything)
