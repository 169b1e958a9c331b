"""`sg3probe generate / info / convert`: outputs, and one-line errors with a non-zero exit."""
import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

import sg3probe
from sg3probe.cli.main import cli


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_generate_writes_nvidia_images_and_latents(tmp_path, t64):
    result = _run("generate", "--model", t64.pickle_path, "--seeds", "3,5", "--trunc", "0.7",
                  "--rotate", "10", "--translate", "0.1,0", "--outdir", tmp_path, "--save-latents")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed0003.npz", "seed0003.png", "seed0005.npz", "seed0005.png"]
    latents = np.load(tmp_path / "seed0005.npz")
    np.testing.assert_array_equal(latents["z"], np.random.RandomState(5).randn(512).astype(np.float32))
    G = sg3probe.load_generator(t64.pickle_path)
    ws = torch.from_numpy(latents["ws"])[None]
    torch.testing.assert_close(ws, G.mapping(torch.from_numpy(latents["z"])[None], truncation_psi=0.7))
    image = G.synthesis(ws, transform=torch.from_numpy(latents["transform"]))
    expected = (image * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    written = np.asarray(Image.open(tmp_path / "seed0005.png")).astype(int)
    assert np.abs(written - expected).max() <= 1  # rendered in a batch of 2 here: float32 rounding only
    assert latents["styles/input"].shape == (4,)


def test_info_prints_s_layout_with_totals(t64):
    result = _run("info", t64.pickle_path)
    assert result.exit_code == 0, result.output
    assert "L14_64_3" in result.output and "stylegan3-t" in result.output
    # t64: 4 (input) + 13 x 32 + 25 + 20 + 16 + 16 + 16 (ToRGB) = ...
    G = sg3probe.load_generator(t64.pickle_path)
    total = sum(s.shape[1] for s in G.styles(G.mapping(torch.zeros(1, 512))).values())
    assert f"S total: {total} dims" in result.output


def test_convert_then_load_gives_same_images(tmp_path, r64):
    out = tmp_path / "r64.pt"
    result = _run("convert", r64.pickle_path, out)
    assert result.exit_code == 0, result.output
    ws = torch.from_numpy(r64.reference["ws_psi1"])
    np.testing.assert_allclose(sg3probe.load_generator(out).synthesis(ws).numpy(), r64.reference["img_psi1"], atol=1e-4)


def test_errors_are_one_line_and_non_zero(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_text("not a pickle")
    npz = tmp_path / "arrays.npz"
    np.savez(npz, a=np.ones(3))  # a zip, as sg3probe checkpoints are, but not one
    cases = [
        (["convert", npz, tmp_path / "out.pt"], "is a zip file but not a readable sg3probe checkpoint"),
        (["generate", "--model", tmp_path / "missing.pkl", "--outdir", tmp_path / "o"], "neither a file nor a zoo name"),
        (["generate", "--model", bad, "--outdir", tmp_path / "o"], "not a pickle"),
        (["info", bad], "not a pickle"),
        (["generate", "--model", bad, "--seeds", "5-1", "--outdir", tmp_path / "o"], "goes downwards"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(cli, [str(a) for a in args])
        assert result.exit_code != 0, args
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
        assert "Traceback" not in result.output
