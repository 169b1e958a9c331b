"""Make the built-in plugins importable when the project is not installed.

The built-in plugins are top-level packages under plugins/, installed by the project's
packaging; a bare checkout run with `pytest` (no `pip install -e .`) has neither them nor the
repository root on sys.path, so both are added here, and only when missing, so that an
installed copy always wins.
"""
import importlib.util
import sys
from pathlib import Path

import pytest

_REPOSITORY = Path(__file__).resolve().parents[2]

for _package, _folder in (("sg3probe", _REPOSITORY), ("sg3probe_disentanglement", _REPOSITORY / "plugins"),
                          ("sg3probe_rotation", _REPOSITORY / "plugins"),
                          ("sg3probe_stylespace", _REPOSITORY / "plugins"),
                          ("sg3probe_styleclip", _REPOSITORY / "plugins"),
                          ("sg3probe_closedform", _REPOSITORY / "plugins")):
    if importlib.util.find_spec(_package) is None:
        sys.path.insert(0, str(_folder))


@pytest.fixture(scope="module")
def tiny():
    """A 16 px StyleGAN3-T (num_ws 6) with 28 non-ToRGB style channels and non-zero biases."""
    import torch

    from sg3probe.models.architecture import stylegan3_config
    from sg3probe.models.generator import Generator

    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = stylegan3_config(img_resolution=16, channel_base=64, channel_max=8, z_dim=16, w_dim=16,
                              num_layers=4, mapping_layers=1, num_fp16_res=0)
    G = Generator(config).eval().requires_grad_(False)
    with torch.no_grad():
        for name in G.synthesis.layer_names:
            getattr(G.synthesis, name).bias.normal_(0, 0.1)
    return G
