"""The toy text-image model: captions from attributes, the network, its weights file, the shipped
weights' retrieval gate on held-out renders, the `toyclip` scorer and `toy train-textimage`."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sg3probe.cli.main import cli
from sg3probe.errors import CheckpointError
from sg3probe.plugin_manager import PluginManager
from sg3probe.textimage import is_text_image_model
from sg3probe.toyworld import captions
from sg3probe.toyworld.attributes import ATTRIBUTES, sample_params
from sg3probe.toyworld.scorer_training import HELD_OUT_SEED
from sg3probe.toyworld.textimage import (
    GATES,
    TWIN_ATTRIBUTES,
    ToyClipNet,
    TrainingConfig,
    captioned_batch,
    contrastive_loss,
    load_toyclip,
    measure_held_out,
    save_toyclip,
    train_toyclip,
    twin_faces,
    twin_loss,
)

# Other seeds than the held-out renders measured right after training.
TEST_SEED = HELD_OUT_SEED + 12345
TINY = dict(channels=(4, 8, 8, 16, 16), word_dim=8, text_hidden=8, embedding_dim=8)


def _one_face(**values):
    """One aligned face with the given attribute values (the rest from seed 0)."""
    params = sample_params(0, 1, aligned=True)
    return params.replace(**{name: torch.tensor([value]) for name, value in values.items()})


# -- captions --------------------------------------------------------------------------------------

def test_every_attribute_has_one_concept_with_consistent_bins():
    assert captions.CONCEPT_NAMES == tuple(info.name for info in ATTRIBUTES)
    for concept, info in zip(captions.CONCEPTS, ATTRIBUTES):
        assert len(concept.phrases) == len(concept.bins)
        assert len(concept.edges) == (0 if info.kind == "binary" else len(concept.bins) - 1)
        assert list(concept.edges) == sorted(concept.edges)
        assert all(options for options in concept.phrases)


@pytest.mark.parametrize("value, expected", [(0.0, "black"), (0.2, "brown"), (0.45, "brown"),
                                             (0.6, "auburn"), (0.9, "blond"), (1.0, "blond")])
def test_hair_colour_bins_follow_the_palette_knots(value, expected):
    bins = captions.face_bins(_one_face(hair_color=value))[0]
    assert captions.bin_names(bins)["hair_color"] == expected


@pytest.mark.parametrize("degrees, expected", [(0, "red"), (30, "orange"), (60, "yellow"), (120, "green"),
                                               (180, "cyan"), (240, "blue"), (269, "purple")])
def test_background_bins_name_the_rendered_hue(degrees, expected):
    # The renderer paints hue 0.75 * background_hue of the wheel: value = degrees / 270.
    bins = captions.face_bins(_one_face(background_hue=degrees / 270.0))[0]
    assert captions.bin_names(bins)["background_hue"] == expected


def test_full_caption_names_every_attribute_in_a_fixed_order():
    face = _one_face(smiling=True, eyeglasses=True, bangs=False, skin_tone=0.9, hair_color=0.95,
                     eye_openness=0.8, face_width=0.7, background_hue=240 / 270)
    assert captions.full_captions(face) == [
        "a wide smiling face with blond hair, light skin, wide eyes, glasses and no bangs "
        "on a blue background"]
    face = face.replace(smiling=torch.tensor([False]), face_width=torch.tensor([0.1]))
    assert captions.full_captions(face)[0].startswith("a narrow face with a closed mouth, blond hair")


def test_random_captions_are_seeded_use_the_vocabulary_and_parse_back_to_their_claims():
    bins = captions.face_bins(sample_params(3, 50, aligned=False))
    vocabulary = set(captions.vocabulary())
    first = [captions.random_caption(row, np.random.default_rng(7)) for row in bins]
    again = [captions.random_caption(row, np.random.default_rng(7)) for row in bins]
    assert first == again
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(10):
        for row in bins:
            text, claims = captions.random_caption(row, rng)
            assert set(captions.words(text)) <= vocabulary
            assert captions.parse_caption(text) == claims, text
            assert all(row[captions.CONCEPT_NAMES.index(name)] == value for name, value in claims.items())
            lengths.append(len(claims))
    # Short captions and full ones both occur.
    assert min(lengths) <= 1 and max(lengths) == len(captions.CONCEPTS)


@pytest.mark.parametrize("prompt, claims", [
    ("a smiling face", {"smiling": 1}),
    ("a face, not smiling", {"smiling": 0}),
    ("a face with glasses", {"eyeglasses": 1}),
    ("a face with no glasses", {"eyeglasses": 0}),
    ("a face with red hair", {"hair_color": 2}),
    ("a wide face with narrow eyes", {"face_width": 1, "eye_openness": 0}),
    ("a narrow face with wide eyes on a red background", {"face_width": 0, "eye_openness": 1,
                                                          "background_hue": 0}),
    ("a face", {}),
])
def test_parse_caption_reads_short_prompts(prompt, claims):
    assert captions.parse_caption(prompt) == claims


def test_parse_caption_refuses_two_values_of_one_attribute():
    with pytest.raises(ValueError, match="smiling"):
        captions.parse_caption("a smiling face with a closed mouth")


def test_satisfies_checks_every_claim_and_ignores_the_rest():
    bins = np.array([[1, 0, 0, 2, 3, 1, 1, 5],
                     [0, 1, 0, 2, 3, 1, 1, 5]])
    claims = captions.claims_matrix([{}, {"smiling": 1}, {"smiling": 1, "eyeglasses": 1},
                                     {"hair_color": 3, "background_hue": 5}])
    assert captions.satisfies(bins, claims).tolist() == [[True, True, False, True],
                                                         [True, False, False, True]]


def test_counterfactual_moves_exactly_one_claim_to_another_bin():
    rng = np.random.default_rng(0)
    bins = captions.face_bins(sample_params(4, 40, aligned=True))
    for row in bins:
        claims = captions.random_claims(row, rng)
        other = captions.counterfactual(claims, rng)
        if not claims:
            assert other is None
            continue
        assert set(other) == set(claims)
        moved = [name for name in claims if other[name] != claims[name]]
        assert len(moved) == 1
        concept = captions.CONCEPTS[captions.CONCEPT_NAMES.index(moved[0])]
        assert 0 <= other[moved[0]] < len(concept.bins)


def test_twins_differ_from_their_faces_in_the_one_changed_shape_attribute():
    params = sample_params(6, 40, aligned=False)
    twins, changed = twin_faces(params, np.random.default_rng(0))
    before, after = captions.face_bins(params), captions.face_bins(twins)
    assert set(changed) <= set(TWIN_ATTRIBUTES) and len(set(changed)) > 1
    for face, name in enumerate(changed):
        differs = np.flatnonzero(before[face] != after[face])
        assert [captions.CONCEPT_NAMES[i] for i in differs] == [name]
    assert torch.equal(twins.angle, params.angle) and torch.equal(twins.shirt_hue, params.shirt_hue)


def test_captioned_batch_pairs_twins_with_captions_true_of_one_twin_only():
    batch = captioned_batch(11, 16)
    positives = batch.positives()
    assert batch.pairs == 8 and batch.images.shape == (16, 3, 64, 64)
    assert len(batch.texts) > 16  # the counterfactual captions follow the faces' own
    assert positives[torch.arange(16), torch.arange(16)].all()
    pairs = torch.arange(8)
    assert not positives[pairs, pairs + 8].any() and not positives[pairs + 8, pairs].any()
    assert not positives[:, 16:].all()


def test_twin_loss_prefers_each_twin_with_its_own_caption():
    embeddings = torch.nn.functional.normalize(torch.randn(8, 8, generator=torch.Generator().manual_seed(2)), dim=1)
    scale = torch.tensor(np.log(20.0))
    swapped = torch.cat([embeddings[4:], embeddings[:4]])
    assert twin_loss(embeddings, embeddings, scale, 4) < np.log(2) < twin_loss(embeddings, swapped, scale, 4)


# -- network and weights ---------------------------------------------------------------------------

def test_tokenizer_maps_unknown_words_and_empty_texts_to_unknown():
    net = ToyClipNet(captions.vocabulary(), **TINY)
    ids, lengths = net.tokenize(["a smiling face", "a zebra", "!!"])
    unknown = net.vocabulary.index("<unk>")
    assert lengths.tolist() == [3, 2, 1]
    assert ids[1, 1] == unknown and ids[2, 0] == unknown and ids[2, 1] == 0  # then padding
    assert all(ids[0, i] == net.vocabulary.index(w) for i, w in enumerate(["a", "smiling", "face"]))


def test_save_and_load_round_trip_and_refuse_another_vocabulary(tmp_path):
    torch.manual_seed(0)
    net = ToyClipNet(captions.vocabulary(), **TINY).eval()
    path = tmp_path / "toyclip.pt"
    save_toyclip(net, path, training={"steps": 1})
    loaded = load_toyclip(path)
    images = captioned_batch(5, 4).images
    texts = ["a smiling face", "a face with red hair on a blue background"]
    with torch.no_grad():
        assert torch.allclose(loaded.encode_image(images), net.encode_image(images), atol=5e-3)
        assert torch.allclose(loaded.encode_text(texts), net.encode_text(texts), atol=5e-3)
    assert torch.load(path, weights_only=True)["training"] == {"steps": 1}

    payload = torch.load(path, weights_only=True)
    payload["vocabulary"] = payload["vocabulary"][:-1] + ["zebra"]
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="another caption vocabulary"):
        load_toyclip(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="train-textimage"):
        load_toyclip(tmp_path / "missing.pt")


def test_contrastive_loss_rewards_matching_pairs():
    embeddings = torch.nn.functional.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    scale = torch.tensor(np.log(20.0))
    positives = torch.eye(6, dtype=torch.bool)
    matched = contrastive_loss(embeddings, embeddings, scale, positives)
    shuffled = contrastive_loss(embeddings, embeddings.roll(1, dims=0), scale, positives)
    assert matched < shuffled
    # A caption true of every image has a uniform target: it costs log(6) at best, either way.
    everything = torch.ones(6, 6, dtype=torch.bool)
    same = embeddings[:1].expand(6, -1)
    assert contrastive_loss(same, same, scale, everything).item() == pytest.approx(np.log(6), abs=1e-4)


@pytest.fixture
def one_thread():
    # Tiny convolutions run many times slower on two threads of a busy 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_few_training_steps_lower_the_loss(one_thread):
    losses = []
    config = TrainingConfig(steps=40, batch_size=32, learning_rate=3e-3, seed=1, channels=(8, 16, 16, 32, 32),
                            word_dim=16, text_hidden=16, embedding_dim=16)
    net = train_toyclip(config, lambda step, values: losses.append(values["loss"]))
    assert len(losses) == 40 and not net.training
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.2


# -- the shipped weights ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def toyclip():
    from sg3probe_toyworld import TOYCLIP_WEIGHTS, ToyClipScorer

    if not TOYCLIP_WEIGHTS.is_file():
        pytest.fail(f"{TOYCLIP_WEIGHTS} is missing: the toy text-image weights ship with the package")
    return ToyClipScorer()


@pytest.fixture(scope="module")
def held_out(toyclip):
    return measure_held_out(toyclip.net, n=500, seed=TEST_SEED)


def test_shipped_weights_pass_the_retrieval_gate_on_held_out_renders(held_out):
    # The issue's gate: the right caption among 10 (its own vs 9 other faces') for >= 80 %.
    assert held_out["image_to_text_top1"] >= GATES["image_to_text_top1"], held_out
    assert held_out["text_to_image_top1"] >= 0.8, held_out
    for half in ("aligned", "unaligned"):
        assert held_out[f"image_to_text_top1_{half}"] >= GATES["image_to_text_top1"], held_out


def test_shipped_weights_read_each_attribute_from_one_attribute_prompts(held_out):
    accuracy = held_out["zero_shot_accuracy"]
    # Measured on these renders: 1.000 for the three binary attributes, 0.93-0.98 for the others
    # (whose errors are faces near a bin edge).
    for name in ("smiling", "eyeglasses", "bangs"):
        assert accuracy[name] >= 0.97, accuracy
    for name in ("skin_tone", "hair_color", "eye_openness", "face_width", "background_hue"):
        assert accuracy[name] >= 0.85, accuracy


def test_shipped_weights_hold_up_on_degraded_renders(toyclip):
    degraded = measure_held_out(toyclip.net, n=300, seed=TEST_SEED + 1, degrade=True)
    assert degraded["image_to_text_top1"] >= GATES["image_to_text_top1"], degraded


def test_toyclip_scorer_is_registered_and_encodes_any_size_differentiably(toyclip):
    manager = PluginManager()
    manager.load_entry_points()
    scorer_class = manager.get_scorer("toyclip")
    assert is_text_image_model(scorer_class) and scorer_class.supports("embed_text")
    assert toyclip.identity().startswith("toyclip sha256:") and len(toyclip.identity()) == len("toyclip sha256:") + 64

    images = captioned_batch(TEST_SEED, 4).images
    large = torch.nn.functional.interpolate(images, size=(256, 256), mode="bilinear", align_corners=False)
    large.requires_grad_(True)
    embeddings = toyclip.encode_image(large)
    assert embeddings.shape == (4, 64)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(4), atol=1e-5)
    text = toyclip.encode_text(["a smiling face"])
    (embeddings @ text.T).sum().backward()
    assert large.grad is not None and torch.isfinite(large.grad).all() and large.grad.abs().sum() > 0
    # Upsampled and read back at 64 px, an image embeds about as its 64 px original.
    with torch.no_grad():
        cosine = (toyclip.encode_image(images) * embeddings).sum(dim=1)
    assert (cosine > 0.9).all(), cosine
    assert toyclip.embed_text(["a face", "a smiling face"]).shape == (2, 64)
    assert toyclip.score(images) == {}


def test_prompts_move_with_the_attribute_they_name(toyclip):
    # The same faces smiling and not, with and without glasses: each prompt prefers the faces it names.
    params = sample_params(TEST_SEED, 32, aligned=True)
    from sg3probe.toyworld.render import render

    for name, prompt in (("smiling", "a smiling face"), ("eyeglasses", "a face with glasses"),
                         ("bangs", "a face with bangs")):
        on = render(params.replace(**{name: torch.ones(32, dtype=torch.bool)})).images
        off = render(params.replace(**{name: torch.zeros(32, dtype=torch.bool)})).images
        with torch.no_grad():
            text = toyclip.encode_text([prompt])[0]
            gain = toyclip.encode_image(on) @ text - toyclip.encode_image(off) @ text
        assert (gain > 0).float().mean() >= 0.9, (name, gain)


def test_train_textimage_command_writes_weights_and_fails_the_gate_when_undertrained(tmp_path):
    result = CliRunner().invoke(cli, ["toy", "train-textimage", "--out", str(tmp_path), "--steps", "2",
                                      "--held-out", "20"])
    assert result.exit_code != 0
    assert "held-out gate failed: image_to_text_top1" in result.output
    assert (tmp_path / "toyclip.pt").is_file()
    assert load_toyclip(tmp_path / "toyclip.pt").embedding_dim == 64
