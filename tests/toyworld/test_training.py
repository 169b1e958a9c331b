"""The toy generators' supervised trainer: ground truth of z, loss decrease, exact resume."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from click.testing import CliRunner

from sg3probe.checkpoints import load_model
from sg3probe.toyworld.attributes import NOISE_DIM
from sg3probe.toyworld.latents import (ground_truth, noise_matrix, noise_matrix_from_metadata, target_images,
                                       toy_noise)
from sg3probe.toyworld.render import REGIONS, render, sample_params
from sg3probe.toyworld.training import (TrainingConfig, TrainingStateError, batch_latents, input_pose_loss,
                                        part_loss, train)

# A network small enough for a few steps in a second or two; the trainer is the same.
TINY = dict(batch=4, z_dim=16, w_dim=16, mapping_layers=1, channel_base=256, channel_max=8,
            num_layers=3, margin_size=2)


@pytest.fixture(autouse=True)
def _one_thread():
    """Bitwise-identical results between runs need the same threading."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_noise_matrix_has_orthonormal_columns_and_is_seeded():
    q = noise_matrix(128)
    assert q.shape == (128, NOISE_DIM)
    assert torch.allclose(q.t() @ q, torch.eye(NOISE_DIM), atol=1e-5)
    assert torch.equal(q, noise_matrix(128))
    assert not torch.allclose(q, noise_matrix(128, seed=4))
    # Every z dimension mixes factors: no row of Q is concentrated on one noise dimension.
    assert (q.abs().max(dim=1).values / q.norm(dim=1)).max() < 0.99


def test_toy_noise_is_standard_normal_for_gaussian_z():
    z = torch.randn(20000, 128, generator=torch.Generator().manual_seed(1))
    noise = toy_noise(z)
    assert noise.mean(dim=0).abs().max() < 0.05
    assert torch.allclose(torch.cov(noise.t()), torch.eye(NOISE_DIM), atol=0.05)


def test_ground_truth_is_a_deterministic_function_of_z():
    z = torch.randn(6, 128, generator=torch.Generator().manual_seed(2))
    first, again = ground_truth(z, aligned=False), ground_truth(z.clone(), aligned=False)
    assert torch.equal(first.attribute_values(), again.attribute_values())
    assert torch.equal(first.pose_values(), again.pose_values())
    # One face's truth does not depend on the rest of the batch.
    assert torch.equal(ground_truth(z[2:3], aligned=False).attribute_values(), first.attribute_values()[2:3])
    assert torch.equal(target_images(z, aligned=True)[1], target_images(z[1:2], aligned=True)[0])
    assert ground_truth(z, aligned=True).pose_values().abs().max() == 0


def test_noise_matrix_round_trips_through_metadata(tmp_path):
    config = TrainingConfig(**TINY)
    result = train(config, tmp_path / "run", steps=1, log=_Sink())
    model = load_model(result.weights_path)
    assert torch.equal(noise_matrix_from_metadata(model.metadata), noise_matrix(config.z_dim))
    assert model.metadata["toyworld"]["variant"] == "aligned"
    assert model.generator.num_ws == config.num_layers + 2


def test_input_pose_loss_is_zero_for_the_true_transform():
    noise = torch.randn(5, NOISE_DIM, generator=torch.Generator().manual_seed(3))
    from sg3probe.toyworld.attributes import attributes_from_noise

    params = attributes_from_noise(noise, aligned=False)
    radians = params.angle * (math.pi / 180)
    styles = torch.stack([radians.cos(), radians.sin(), params.tx, params.ty], dim=1)
    assert input_pose_loss(styles, noise, aligned=False) < 1e-10
    assert input_pose_loss(styles, noise, aligned=True) > 0.01


def test_part_loss_is_the_mean_error_over_the_small_parts_only():
    output = render(sample_params(seed=0, n=4, aligned=True))
    targets, masks = output.images, output.masks
    assert part_loss(targets, targets, masks) == 0
    # An error on the background (far from every part) is not seen; one of 0.5 on every part
    # pixel gives 0.5 wherever it is not diluted by the 1-px dilation ring.
    background = masks == REGIONS.index("background")
    assert part_loss(targets + 0.7 * background.unsqueeze(1), targets, masks) == 0
    mouth = (masks == REGIONS.index("mouth")).unsqueeze(1)
    assert 0 < part_loss(targets + 0.5 * mouth, targets, masks) < 0.5
    small = torch.isin(masks, torch.tensor([REGIONS.index(n) for n in ("eyes", "brows", "mouth", "eyeglasses")]))
    dilated = torch.nn.functional.max_pool2d(small.unsqueeze(1).float(), 3, 1, 1)
    assert part_loss(targets + 0.5 * dilated, targets, masks) == pytest.approx(0.5)


def test_the_part_term_is_logged_and_recorded_when_asked(tmp_path):
    config = TrainingConfig(**TINY, part_weight=1.0)
    result = train(config, tmp_path / "run", steps=2, log_every=1, log=_Sink())
    assert all(row["parts"] > 0 for row in result.history)
    metadata = load_model(result.weights_path).metadata["toyworld"]
    assert metadata["training_config"]["part_weight"] == 1.0 and "small-part" in metadata["objective"]


def test_a_few_steps_reduce_the_loss(tmp_path):
    config = TrainingConfig(**TINY)
    held_out = torch.randn(32, config.z_dim, generator=torch.Generator().manual_seed(5))
    targets = target_images(held_out, aligned=True)

    def held_out_l1() -> float:
        generator = load_model(tmp_path / "run" / "generator.pt").generator
        return (generator(held_out) - targets).abs().mean().item()

    train(config, tmp_path / "run", steps=1, log=_Sink())
    before = held_out_l1()
    result = train(config, tmp_path / "run", steps=40, resume=True, log_every=10, log=_Sink())
    assert result.step == 40 and result.images_seen == 40 * config.batch
    # StyleGAN3 learns slowly at first (40 steps move the tiny net ~2 %); an unchanged or
    # diverging network fails this.
    assert held_out_l1() < 0.985 * before
    assert batch_latents(config, 0).shape == (config.batch, config.z_dim)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    config = TrainingConfig(**TINY)
    straight = train(config, tmp_path / "straight", steps=4, log_every=1, log=_Sink())
    train(config, tmp_path / "split", steps=2, log_every=1, log=_Sink())
    resumed = train(config, tmp_path / "split", steps=4, resume=True, log_every=1, log=_Sink())
    assert resumed.step == 4
    expected = load_model(straight.weights_path).generator.state_dict()
    actual = load_model(resumed.weights_path).generator.state_dict()
    for name, tensor in expected.items():
        assert torch.equal(tensor, actual[name]), name
    assert [row["loss"] for row in resumed.history] == [row["loss"] for row in straight.history]


def test_refuses_to_overwrite_or_resume_with_other_settings(tmp_path):
    config = TrainingConfig(**TINY)
    train(config, tmp_path / "run", steps=1, log=_Sink())
    with pytest.raises(TrainingStateError, match="--resume"):
        train(config, tmp_path / "run", steps=2, log=_Sink())
    with pytest.raises(TrainingStateError, match="lr"):
        train(dataclasses.replace(config, lr=0.02), tmp_path / "run", steps=2, resume=True, log=_Sink())


def test_a_new_learning_rate_on_resume_is_applied_and_recorded(tmp_path):
    config = TrainingConfig(**TINY)
    train(config, tmp_path / "run", steps=2, log=_Sink())
    result = train(config, tmp_path / "run", steps=3, resume=True, lr=config.lr / 10, log=_Sink())
    state = torch.load(result.state_path, weights_only=True)
    assert state["lr_changes"] == [{"step": 2, "lr": config.lr / 10}]
    assert all(group["lr"] == config.lr / 10 for group in state["optimizer"]["param_groups"])
    metadata = load_model(result.weights_path).metadata["toyworld"]
    assert metadata["lr_changes"] == [{"step": 2, "lr": config.lr / 10}]
    train(config, tmp_path / "run", steps=4, resume=True, log=_Sink())  # no --lr: the lowered one stays
    assert torch.load(result.state_path, weights_only=True)["lr_changes"] == [{"step": 2, "lr": config.lr / 10}]


def test_the_mapping_gets_its_own_learning_rate_and_keeps_the_ratio(tmp_path):
    config = TrainingConfig(**TINY, mapping_lr_scale=10.0)
    result = train(config, tmp_path / "run", steps=2, log=_Sink())
    groups = torch.load(result.state_path, weights_only=True)["optimizer"]["param_groups"]
    assert [group["lr"] for group in groups] == [config.lr, 10 * config.lr]
    assert len(groups[1]["params"]) == sum(1 for _ in load_model(result.weights_path).generator.mapping.parameters())
    lowered = train(config, tmp_path / "run", steps=3, resume=True, lr=config.lr / 10, log=_Sink())
    groups = torch.load(lowered.state_path, weights_only=True)["optimizer"]["param_groups"]
    assert [group["lr"] for group in groups] == pytest.approx([config.lr / 10, config.lr])


def test_a_state_saved_before_a_new_option_existed_still_resumes(tmp_path):
    config = TrainingConfig(**TINY)
    result = train(config, tmp_path / "run", steps=1, log=_Sink())
    state = torch.load(result.state_path, weights_only=True)
    del state["training_config"]["mapping_lr_scale"]  # as written by an older sg3probe
    del state["training_config"]["part_weight"]
    torch.save(state, result.state_path)
    assert train(config, tmp_path / "run", steps=2, resume=True, log=_Sink()).step == 2


def test_config_rejects_unknown_variant():
    with pytest.raises(ValueError, match="aligned, unaligned"):
        TrainingConfig(variant="sideways")


def test_train_command_writes_weights_and_resumes(tmp_path, monkeypatch):
    from sg3probe.cli import toy as toy_cli
    from sg3probe.toyworld import training

    # The command builds its config from the CLI options; shrink the network for the test.
    monkeypatch.setattr(training.TrainingConfig, "__init__", _tiny_init(training.TrainingConfig.__init__))
    args = ["train", "--variant", "unaligned", "--steps", "2", "--batch", "4", "--workdir", str(tmp_path / "w"),
            "--out", str(tmp_path / "g.pt"), "--threads", "1"]
    result = CliRunner().invoke(toy_cli.toy, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "g.pt").is_file() and (tmp_path / "w" / "state.pt").is_file()
    again = CliRunner().invoke(toy_cli.toy, args[:4] + ["3"] + args[5:] + ["--resume"])
    assert again.exit_code == 0, again.output
    assert "step 3," in again.output
    refused = CliRunner().invoke(toy_cli.toy, args)
    assert refused.exit_code != 0 and "--resume" in refused.output


def test_train_command_sets_the_generator_width(tmp_path, monkeypatch):
    from sg3probe.checkpoints.native import load_native
    from sg3probe.cli import toy as toy_cli
    from sg3probe.toyworld import training

    monkeypatch.setattr(training.TrainingConfig, "__init__", _tiny_init(training.TrainingConfig.__init__))
    args = ["train", "--variant", "aligned", "--steps", "1", "--batch", "2", "--workdir", str(tmp_path / "w"),
            "--out", str(tmp_path / "g.pt"), "--threads", "1", "--channel-base", "128", "--channel-max", "12"]
    result = CliRunner().invoke(toy_cli.toy, args)
    assert result.exit_code == 0, result.output
    generator, metadata = load_native(tmp_path / "g.pt")
    assert (generator.config.channel_base, generator.config.channel_max) == (128, 12)
    saved = metadata["toyworld"]["training_config"]
    assert (saved["channel_base"], saved["channel_max"]) == (128, 12)


def _tiny_init(original):
    def init(self, **kwargs):
        original(self, **{**TINY, **kwargs})
    return init


class _Sink:
    """A log stream that keeps nothing."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass
