"""The Scorer interface: attributes, capability queries and checked scores."""
from __future__ import annotations

import numpy as np
import pytest

from sg3probe.config import parse_options
from sg3probe.errors import ConfigError, PluginError
from sg3probe.scorer import Attribute, Scorer, Segmentation, check_scorer_class, check_scores


class Faces(Scorer):
    name = "faces"
    attributes = (Attribute("smiling", "binary"), Attribute("angle", "continuous", (-180, 180)))

    def score(self, images):
        batch = len(images)
        return {"smiling": np.zeros(batch), "angle": np.ones(batch)}

    def segment(self, images):
        return Segmentation(np.zeros((len(images), 2, 2), dtype=np.int64), ("background",))


def test_supports_reports_overridden_capabilities_only():
    scorer = Faces()
    assert scorer.supports("segment")
    assert not scorer.supports("pose") and not scorer.supports("embed_text")
    with pytest.raises(ValueError, match="segment, pose, embed_image, embed_text"):
        scorer.supports("classify")
    with pytest.raises(NotImplementedError, match="'faces' cannot estimate pose"):
        scorer.pose(np.zeros((1, 3, 2, 2)))


def test_segment_result_unpacks_as_masks_and_regions():
    masks, regions = Faces().segment(np.zeros((3, 3, 2, 2)))
    assert masks.shape == (3, 2, 2) and regions == ("background",)


def test_attribute_kind_is_checked_and_looked_up_by_name():
    with pytest.raises(ValueError, match="binary, continuous"):
        Attribute("x", "categorical")
    assert Faces.attribute("angle").value_range == (-180, 180)
    with pytest.raises(KeyError, match="smiling, angle"):
        Faces.attribute("age")


def test_check_scores_accepts_declared_and_rejects_others():
    scorer = Faces()
    checked = check_scores(scorer, scorer.score(np.zeros((4, 3, 2, 2))), batch_size=4)
    assert checked["angle"].dtype == np.float32 and checked["angle"].shape == (4,)
    with pytest.raises(PluginError, match="declares attributes"):
        check_scores(scorer, {"smiling": np.zeros(4)}, batch_size=4)
    with pytest.raises(PluginError, match=r"shape \(4, 1\)"):
        check_scores(scorer, {"smiling": np.zeros((4, 1)), "angle": np.zeros(4)}, batch_size=4)


def test_check_scorer_class_rejects_duplicate_attribute_names():
    check_scorer_class(Faces)

    class Twice(Faces):
        attributes = (Attribute("a", "binary"), Attribute("a", "binary"))

    with pytest.raises(ValueError, match="twice"):
        check_scorer_class(Twice)


class Classifier(Scorer):
    """A scorer with options, as a user's own classifier plugin would have."""

    name = "classifier"
    attributes = (Attribute("smiling", "binary"),)

    def __init__(self, device="cpu", checkpoint: str = "default.pt", threshold: float = 0.0):
        super().__init__(device)
        self.checkpoint, self.threshold = checkpoint, threshold

    def score(self, images):
        return {"smiling": np.zeros(len(images))}


def test_build_scorer_passes_options_and_names_the_accepted_ones(manager, write_plugin):
    folder = write_plugin("classifier_plugin", '''
        import sg3probe
        from tests.plugins_api.test_scorer_api import Classifier

        @sg3probe.hookimpl
        def register_scorers(register):
            register(Classifier)
    ''')
    manager.load_plugins_dir(folder)
    built = manager.build_scorer("classifier", "cpu", {"checkpoint": "mine.pt", "threshold": 0.5})
    assert (built.checkpoint, built.threshold, built.device) == ("mine.pt", 0.5, "cpu")
    assert manager.build_scorer("classifier").checkpoint == "default.pt"
    with pytest.raises(ConfigError) as error:
        manager.build_scorer("classifier", "cpu", {"chekpoint": "mine.pt"})
    assert str(error.value) == ("scorer 'classifier' takes no option 'chekpoint'; its options are: "
                                "checkpoint, threshold")


def test_parse_options_reads_toml_values_and_rejects_malformed_ones():
    assert parse_options(["checkpoint=a.pt", "threshold=0.5", "flag=true"], "--scorer-option") == {
        "checkpoint": "a.pt", "threshold": 0.5, "flag": True}
    for bad in ("checkpoint", "=x", "a.b=1"):
        with pytest.raises(ConfigError, match="--scorer-option"):
            parse_options([bad], "--scorer-option")
