"""The `openclip` text-image model: clear one-line errors without a checkpoint or the package, and
(where open_clip imports) a randomly initialised small open_clip model loaded from a local file."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from click.testing import CliRunner

from sg3probe.cli.main import cli
from sg3probe.errors import CheckpointError, ConfigError, PluginError
from sg3probe.plugin_manager import PluginManager
from sg3probe.textimage import is_text_image_model
from sg3probe.textimage_openclip import ARCH_ENV, CHECKPOINT_ENV, OpenClipScorer, import_open_clip, read_state_dict

# A deliberately small open_clip architecture (a ViT and a text transformer of two layers each).
TINY_ARCH = "sg3probe-test-tiny"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(autouse=True)
def no_environment_options(monkeypatch):
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    monkeypatch.delenv(ARCH_ENV, raising=False)


def _open_clip_or_skip():
    try:
        return import_open_clip()
    except PluginError as error:
        pytest.skip(f"open_clip does not import here, so the randomly initialised model cannot be "
                    f"built: {error}")


def test_the_plugin_registers_a_text_image_scorer():
    manager = PluginManager()
    manager.load_entry_points()
    scorer = manager.get_scorer("openclip")
    assert scorer is OpenClipScorer and is_text_image_model(scorer)


def test_no_checkpoint_is_a_one_line_error_saying_how_to_give_one():
    with pytest.raises(ConfigError) as error:
        OpenClipScorer()
    message = str(error.value)
    assert "\n" not in message and CHECKPOINT_ENV in message and ARCH_ENV in message
    assert "never downloads" in message


def test_a_missing_checkpoint_file_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "absent.bin"))
    monkeypatch.setenv(ARCH_ENV, "ViT-B-32")
    with pytest.raises(CheckpointError) as error:
        OpenClipScorer()
    assert "absent.bin (from SG3PROBE_OPENCLIP_CHECKPOINT) does not exist" in str(error.value)
    assert "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match="absent.bin .from the checkpoint option. does not exist"):
        OpenClipScorer(checkpoint=tmp_path / "absent.bin")
    installed = importlib.util.find_spec("open_clip") is not None
    assert ("pip install open_clip_torch" in str(error.value)) == (not installed)  # both fixes named at once


def test_a_checkpoint_without_an_architecture_is_a_one_line_error(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"")
    with pytest.raises(ConfigError, match=ARCH_ENV):
        OpenClipScorer(checkpoint=path)


def test_commands_that_need_the_checkpoint_fail_with_one_line(tmp_path):
    # `sg3probe scorers` lists it without building it; building it (here through a run) fails
    # with the checkpoint error as the CLI's single line, whether or not open_clip is installed.
    result = CliRunner().invoke(cli, ["scorers"])
    assert result.exit_code == 0 and "openclip" in result.output
    result = CliRunner().invoke(cli, ["run", "disentanglement", "--scorer", "openclip", "--seeds", "0-3",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and CHECKPOINT_ENV in lines[0], result.output


def test_checkpoint_given_as_scorer_options_in_a_run(tmp_path, monkeypatch):
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    absent = tmp_path / "absent.bin"
    result = CliRunner().invoke(cli, ["run", "disentanglement", "--scorer", "openclip", "--seeds", "0-3",
                                      "--set", f'scorer_options.checkpoint="{absent}"',
                                      "--set", 'scorer_options.arch="ViT-B-32"', "--out", str(tmp_path / "run")])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "absent.bin (from the checkpoint option) does not exist" in lines[0], result.output
    result = CliRunner().invoke(cli, ["run", "disentanglement", "--seeds", "0-3", "--set", "scorer_options.size=3",
                                      "--out", str(tmp_path / "run2")])
    assert result.exit_code != 0 and "scorer 'toyfaces' takes no option 'size'" in result.output


def test_styleclip_with_openclip_fails_before_sampling(tmp_path, monkeypatch):
    # The analyzer loads its text model in `prepare`, before the run folder and the samples.
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    result = CliRunner().invoke(cli, ["run", "styleclip", "--set", "styleclip.text_model=openclip",
                                      "--set", "styleclip.eval_samples=2", "--set", "styleclip.alpha=1",
                                      "--seeds", "90000-90003", "--out", str(tmp_path / "run")])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and CHECKPOINT_ENV in lines[0], result.output
    assert not (tmp_path / "run" / "samples").exists()


def test_without_open_clip_the_error_says_how_to_install(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_open_clip(name, *args, **kwargs):
        if name == "open_clip" or name.startswith("open_clip."):
            raise ImportError("No module named 'open_clip'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_open_clip)
    path = tmp_path / "model.bin"
    path.write_bytes(b"")
    with pytest.raises(PluginError, match="pip install open_clip_torch"):
        OpenClipScorer(checkpoint=path, arch="ViT-B-32")


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A randomly initialised small open_clip model saved as a plain state dict, and the model."""
    open_clip = _open_clip_or_skip()
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / f"{TINY_ARCH}.json").write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_ARCH, pretrained=None).eval()
    path = tmp_path / "tiny.bin"
    torch.save(model.state_dict(), path)
    return path, model


def test_open_clip_model_from_a_local_file_matches_open_clip(tiny_checkpoint, tmp_path):
    open_clip = _open_clip_or_skip()
    path, model = tiny_checkpoint
    scorer = OpenClipScorer(checkpoint=path, arch=TINY_ARCH)
    assert scorer.image_size == 32 and scorer.embedding_dim == 32
    assert scorer.identity().startswith(f"openclip {TINY_ARCH} sha256:")

    images = (torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1).requires_grad_(True)
    embeddings = scorer.encode_image(images)
    assert embeddings.shape == (3, 32)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-5)
    embeddings.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.encode_image(scorer.preprocess(images)), dim=-1)
        assert torch.allclose(scorer.encode_image(images), expected, atol=1e-5)
        tokens = open_clip.get_tokenizer(TINY_ARCH)(["a smiling face"])
        expected_text = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1)
        assert torch.allclose(scorer.encode_text(["a smiling face"]), expected_text, atol=1e-5)
    assert scorer.embed_text(["a face", "a smiling face"]).shape == (2, 32)

    # A training checkpoint ({"state_dict": ...} with DDP's "module." prefixes) reads the same.
    wrapped = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, wrapped)
    with torch.no_grad():
        assert torch.allclose(OpenClipScorer(checkpoint=wrapped, arch=TINY_ARCH).encode_image(images),
                              expected, atol=1e-5)


def test_a_checkpoint_of_another_architecture_is_refused(tiny_checkpoint, tmp_path):
    open_clip = _open_clip_or_skip()
    path, _ = tiny_checkpoint
    folder = tmp_path / "other-configs"
    folder.mkdir()
    deeper = {**TINY_CONFIG, "text_cfg": {**TINY_CONFIG["text_cfg"], "layers": 3}}  # more keys
    wider = {**TINY_CONFIG, "embed_dim": 16}  # same keys, other shapes
    (folder / f"{TINY_ARCH}-deeper.json").write_text(json.dumps(deeper))
    (folder / f"{TINY_ARCH}-wider.json").write_text(json.dumps(wider))
    open_clip.add_model_config(folder)
    for arch in (f"{TINY_ARCH}-deeper", f"{TINY_ARCH}-wider"):
        with pytest.raises(CheckpointError, match=f"does not fit open_clip architecture '{arch}'"):
            OpenClipScorer(checkpoint=path, arch=arch)
    with pytest.raises(ConfigError, match="no architecture 'no-such-arch'"):
        OpenClipScorer(checkpoint=path, arch="no-such-arch")


def test_weights_files_are_read_without_open_clip(tmp_path):
    # The file reading needs torch only, so it is checked here whether or not open_clip imports.
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {"module.visual.proj": torch.ones(2), "module.logit_scale": torch.zeros(())}}, wrapped)
    assert sorted(read_state_dict(wrapped)) == ["logit_scale", "visual.proj"]  # entry and DDP prefix dropped
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not torch")
    with pytest.raises(CheckpointError, match="is not a readable open_clip weights file"):
        read_state_dict(broken)
    empty = tmp_path / "empty.pt"
    torch.save({}, empty)
    with pytest.raises(CheckpointError, match="holds no state dict"):
        read_state_dict(empty)
