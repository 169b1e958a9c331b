"""DCI, MIG, SAP and the StyleSpace attribute protocol on synthetic codes with known answers."""
from math import log

import numpy as np
import pytest
from scipy.linalg import hadamard
from sklearn.metrics import mutual_info_score
from sklearn.svm import LinearSVC

from sg3probe.errors import Sg3probeError
from sg3probe_disentanglement import metrics
from sg3probe_disentanglement.metrics.dci import _distinct_columns  # the module, not metrics.dci the function

N_SAMPLES = 600
N_FACTORS = 4
N_NOISE_CODES = 2


def _halves(array):
    half = len(array) // 2
    return array[:half], array[half:]


@pytest.fixture(scope="module")
def binary_factors():
    """[samples, factors] independent balanced binary factors."""
    return np.random.default_rng(0).integers(0, 2, (N_SAMPLES, N_FACTORS))


@pytest.fixture(scope="module")
def one_to_one_codes(binary_factors):
    """[samples, factors + noise]: factor j plus a little noise in code j, then pure noise codes."""
    rng = np.random.default_rng(1)
    copies = binary_factors + 0.1 * rng.standard_normal(binary_factors.shape)
    return np.hstack([copies, rng.standard_normal((N_SAMPLES, N_NOISE_CODES))])


@pytest.fixture(scope="module")
def mixed_codes(binary_factors):
    """[samples, factors + noise]: every code an equal-weight mix of all factors.

    The rotation is a Hadamard matrix with random signs and column order: orthogonal and dense
    with every entry of the same magnitude. A generic random rotation of binary factors often
    leaves one factor dominant along some code, which trees exploit (D 0.7-0.85 measured), so
    it has no sharp expected answer; equal mixing has: no code belongs to any factor.
    """
    rng = np.random.default_rng(2)
    rotation = hadamard(N_FACTORS) / np.sqrt(N_FACTORS) * rng.choice([-1, 1], N_FACTORS)[:, None]
    rotation = rotation[:, rng.permutation(N_FACTORS)]  # [factors, codes]
    mixed = (2 * binary_factors - 1) @ rotation + 0.1 * rng.standard_normal(binary_factors.shape)
    return np.hstack([mixed, rng.standard_normal((N_SAMPLES, N_NOISE_CODES))])


def _dci_on_halves(codes, factors, **options):
    codes_train, codes_test = _halves(codes)
    factors_train, factors_test = _halves(factors)
    return metrics.dci(codes_train, factors_train, codes_test, factors_test, **options)


@pytest.fixture(scope="module")
def one_to_one_dci(one_to_one_codes, binary_factors):
    return _dci_on_halves(one_to_one_codes, binary_factors, n_jobs=2)


@pytest.fixture(scope="module")
def mixed_dci(mixed_codes, binary_factors):
    return _dci_on_halves(mixed_codes, binary_factors, n_jobs=2)


# ----------------------------------------------------------------------------- D and C formulas


def test_disentanglement_uses_base_factors_and_completeness_base_codes():
    importance = np.array([[0.8, 0.0], [0.0, 0.6], [0.2, 0.4]])  # [3 codes, 2 factors]
    # Rows: codes 0 and 1 serve one factor (D_i = 1); code 2 splits 1/3 : 2/3 (entropy base 2).
    code_2 = 1 - (-(1 / 3) * log(1 / 3) - (2 / 3) * log(2 / 3)) / log(2)
    code_weights = np.array([0.8, 0.6, 0.6]) / 2.0
    # Columns: factor 0 spread 0.8 : 0.2 and factor 1 0.6 : 0.4 over 3 codes (entropy base 3).
    factor_0 = 1 - (-0.8 * log(0.8) - 0.2 * log(0.2)) / log(3)
    factor_1 = 1 - (-0.6 * log(0.6) - 0.4 * log(0.4)) / log(3)

    scores = metrics.disentanglement_completeness(importance)

    np.testing.assert_allclose(scores.code_disentanglement, [1.0, 1.0, code_2], atol=1e-8)
    np.testing.assert_allclose(scores.code_weights, code_weights)
    np.testing.assert_allclose(scores.factor_completeness, [factor_0, factor_1], atol=1e-8)
    np.testing.assert_allclose(scores.factor_weights, [0.5, 0.5])
    assert scores.disentanglement == pytest.approx(0.4 + 0.3 + 0.3 * code_2, abs=1e-8)
    assert scores.completeness == pytest.approx(0.5 * factor_0 + 0.5 * factor_1, abs=1e-8)


def test_all_zero_importance_counts_as_uniform():
    scores = metrics.disentanglement_completeness(np.zeros((4, 3)))
    assert scores.disentanglement == pytest.approx(0.0, abs=1e-9)
    assert scores.completeness == pytest.approx(0.0, abs=1e-9)


def test_single_factor_or_single_code_is_trivially_disentangled_or_complete():
    assert metrics.disentanglement_completeness(np.array([[0.3], [0.7]])).disentanglement == 1.0
    assert metrics.disentanglement_completeness(np.array([[0.3, 0.7]])).completeness == 1.0


# ----------------------------------------------------------------------------- DCI


def test_dci_of_one_to_one_code_is_one(one_to_one_dci):
    assert one_to_one_dci.disentanglement > 0.9
    assert one_to_one_dci.completeness > 0.9
    assert one_to_one_dci.informativeness > 0.95
    assert one_to_one_dci.importance.shape == (N_FACTORS + N_NOISE_CODES, N_FACTORS)
    np.testing.assert_array_equal(one_to_one_dci.importance.argmax(axis=0), np.arange(N_FACTORS))
    np.testing.assert_allclose(one_to_one_dci.importance.sum(axis=0), 1.0)


def test_dci_of_mixed_code_has_low_disentanglement_but_full_information(one_to_one_dci, mixed_dci):
    assert mixed_dci.disentanglement < 0.5
    assert mixed_dci.disentanglement < one_to_one_dci.disentanglement - 0.4
    # The information is all there, only spread over the codes.
    assert mixed_dci.informativeness > 0.9


def test_dci_result_tables_and_sizes(one_to_one_dci):
    assert one_to_one_dci.n_codes == N_FACTORS + N_NOISE_CODES
    assert one_to_one_dci.summary()["n_codes"] == N_FACTORS + N_NOISE_CODES
    table = one_to_one_dci.factor_table()
    assert list(table.index) == [f"factor_{j}" for j in range(N_FACTORS)]
    assert (table["n_train"] == N_SAMPLES // 2).all() and (table["n_test"] == N_SAMPLES // 2).all()
    assert table["test_accuracy"].mean() == pytest.approx(one_to_one_dci.informativeness)


def test_dci_does_not_depend_on_parallelism(one_to_one_codes, binary_factors, one_to_one_dci):
    serial = _dci_on_halves(one_to_one_codes, binary_factors, n_jobs=1)
    np.testing.assert_array_equal(serial.importance, one_to_one_dci.importance)
    np.testing.assert_array_equal(serial.test_accuracy, one_to_one_dci.test_accuracy)


def test_identical_codes_are_fitted_once_and_share_their_importance(one_to_one_codes, binary_factors):
    # Copies out of order, as a user's concatenated spaces might hold them: 2 0 2 1 0 3 4 5 5.
    layout = [2, 0, 2, 1, 0, 3, 4, 5, 5]
    first_occurrences = [2, 0, 1, 3, 4, 5]
    copies = np.array([2, 2, 1, 1, 1, 2])  # of each first occurrence
    distinct = _dci_on_halves(one_to_one_codes[:, first_occurrences], binary_factors)

    repeated = _dci_on_halves(one_to_one_codes[:, layout], binary_factors)

    owner = [first_occurrences.index(column) for column in layout]
    expected = (distinct.importance / copies[:, None])[owner]  # [9 codes, factors]
    np.testing.assert_allclose(repeated.importance, expected, rtol=1e-12)
    np.testing.assert_array_equal(repeated.test_accuracy, distinct.test_accuracy)
    assert repeated.disentanglement == pytest.approx(distinct.disentanglement, abs=1e-6)  # up to the 1e-11 entropy epsilon
    assert repeated.completeness == pytest.approx(
        metrics.disentanglement_completeness(expected).completeness, abs=1e-12
    )
    assert repeated.completeness < distinct.completeness  # spread over more codes


def test_codes_equal_on_all_but_one_sample_are_not_merged(one_to_one_codes):
    codes = one_to_one_codes[:, [0, 0, 1]].copy()
    codes[-1, 1] += 1.0  # differs on one (test) sample only
    groups = _distinct_columns(*_halves(codes))
    np.testing.assert_array_equal(groups.keep, [0, 1, 2])
    groups = _distinct_columns(*_halves(one_to_one_codes[:, [0, 0, 1]]))
    np.testing.assert_array_equal(groups.keep, [0, 2])
    np.testing.assert_array_equal(groups.owner, [0, 0, 1])


def test_tiled_codes_on_attribute_subsets_keep_the_untiled_d_and_i(protocol_data):
    codes, logits, names = protocol_data
    subsets = metrics.select_attribute_subsets(logits, names)
    untiled = metrics.dci_per_attribute_subsets(codes, subsets)
    tiled = metrics.dci_per_attribute_subsets(np.tile(codes, 4), subsets)  # like W+ = W in 4 layers
    assert tiled.n_codes == 4 * untiled.n_codes
    np.testing.assert_allclose(tiled.importance, np.tile(untiled.importance, (4, 1)) / 4, rtol=1e-12)
    assert tiled.disentanglement == pytest.approx(untiled.disentanglement, abs=1e-6)  # up to the 1e-11 entropy epsilon
    assert tiled.informativeness == untiled.informativeness


def test_dci_rejects_a_factor_with_one_class(one_to_one_codes, binary_factors):
    factors = binary_factors.copy()
    factors[:, 2] = 1
    with pytest.raises(metrics.MetricInputError, match="'factor_2' takes a single value"):
        _dci_on_halves(one_to_one_codes, factors)


def test_dci_rejects_continuous_factors(one_to_one_codes):
    logits = np.random.default_rng(3).standard_normal((N_SAMPLES, 2))
    with pytest.raises(metrics.MetricInputError, match="select_attribute_subsets"):
        _dci_on_halves(one_to_one_codes, logits)


def test_metric_errors_are_one_line_user_errors(one_to_one_codes, binary_factors):
    with pytest.raises(Sg3probeError, match=r"\[samples, codes\]") as error:
        metrics.mig(one_to_one_codes[:, 0], binary_factors)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="600 samples"):
        metrics.mig(one_to_one_codes, binary_factors[:10])


# ----------------------------------------------------------------------------- MIG


@pytest.fixture(scope="module")
def four_level_factors():
    """[samples, 3] independent factors with 4 levels each."""
    return np.random.default_rng(4).integers(0, 4, (N_SAMPLES, 3))


def test_mig_of_one_to_one_discrete_code_is_high(four_level_factors):
    rng = np.random.default_rng(5)
    codes = np.hstack([four_level_factors, rng.standard_normal((N_SAMPLES, 3))])
    result = metrics.mig(codes, four_level_factors)
    assert result.mig > 0.8
    assert result.mutual_information.shape == (6, 3)
    np.testing.assert_allclose(result.factor_entropy, log(4), atol=0.01)


def test_mig_of_mixed_code_is_low(mixed_codes, binary_factors):
    assert metrics.mig(mixed_codes, binary_factors).mig < 0.2


def test_mig_mutual_information_is_sklearns_on_histogram_bins(four_level_factors):
    rng = np.random.default_rng(6)
    codes = rng.standard_normal((N_SAMPLES, 5)) * [0.01, 1, 3, 100, 1] + four_level_factors[:, :1]
    codes[:, 4] = 7.0  # a constant code carries no information
    result = metrics.mig(codes, four_level_factors, n_bins=20)
    for code in range(codes.shape[1]):
        bins = np.digitize(codes[:, code], np.histogram(codes[:, code], bins=20)[1][:-1])
        for factor in range(four_level_factors.shape[1]):
            expected = mutual_info_score(four_level_factors[:, factor], bins)
            assert result.mutual_information[code, factor] == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------- SAP


def _sap_on_halves(codes, factors, **options):
    codes_train, codes_test = _halves(codes)
    factors_train, factors_test = _halves(factors)
    return metrics.sap(codes_train, factors_train, codes_test, factors_test, **options)


def test_sap_of_one_to_one_code_is_high_and_of_mixed_code_low(one_to_one_codes, mixed_codes, binary_factors):
    one_to_one = _sap_on_halves(one_to_one_codes, binary_factors)
    mixed = _sap_on_halves(mixed_codes, binary_factors)
    # Balanced binary factors: the own code is ~100% right, the others ~50%, so SAP tops at ~0.5.
    assert one_to_one.sap > 0.4
    assert mixed.sap < 0.1
    assert one_to_one.accuracy.shape == (N_FACTORS + N_NOISE_CODES, N_FACTORS)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("standardize", [False, True])
def test_sap_accuracy_is_linearsvc_on_each_code(n_classes, standardize):
    rng = np.random.default_rng(7)
    labels = rng.choice(n_classes, 300, p=np.linspace(1, 2, n_classes) / np.linspace(1, 2, n_classes).sum())
    scale, offset = rng.uniform(0.1, 3, 6), rng.uniform(-2, 2, 6)
    codes = rng.standard_normal((300, 6)) * scale + offset + labels[:, None] * rng.uniform(0, 1, 6)
    codes_train, codes_test = codes[:150], codes[150:]
    result = metrics.sap(codes_train, labels[:150], codes_test, labels[150:], standardize=standardize)
    for code in range(codes.shape[1]):
        train, test = codes_train[:, [code]], codes_test[:, [code]]
        if standardize:
            mean, std = train.mean(), train.std()
            train, test = (train - mean) / std, (test - mean) / std
        svm = LinearSVC(C=0.01, class_weight="balanced", tol=1e-10, max_iter=100_000).fit(train, labels[:150])
        assert result.accuracy[code, 0] == pytest.approx(svm.score(test, labels[150:]))


# ----------------------------------------------------------------------------- StyleSpace protocol


@pytest.fixture(scope="module")
def protocol_data():
    """codes [5000, 5] (3 copies of a latent attribute value, 2 noise) and logits [5000, 4]."""
    rng = np.random.default_rng(8)
    n = 5000
    latent = rng.standard_normal((n, 3))
    codes = np.hstack([latent + 0.05 * rng.standard_normal((n, 3)), rng.standard_normal((n, 2))])
    rare = np.where(np.arange(n) < 0.02 * n, 3.0, -3.0)[rng.permutation(n)]  # 2% positive
    logits = np.column_stack([latent, rare])
    return codes, logits, ["smile", "age", "glasses", "rare"]


def test_attribute_filter_drops_an_attribute_with_two_percent_positives(protocol_data):
    _, logits, names = protocol_data
    subsets = metrics.select_attribute_subsets(logits, names)
    assert subsets.names == ("smile", "age", "glasses")
    assert list(subsets.dropped) == ["rare"]
    assert "2.0% of samples above" in subsets.dropped["rare"]
    assert subsets.selection.loc["rare", "positive_fraction"] == pytest.approx(0.02)


def test_attribute_filter_keeps_more_than_five_percent_and_drops_five_or_less():
    values = np.linspace(-1, 1, 1000)
    # 51 and 50 of the 1000 samples above 0: 5.1% is kept, exactly 5% is not "more than 5%".
    logits = np.column_stack([values - np.sort(values)[-52], values - np.sort(values)[-51]])
    subsets = metrics.select_attribute_subsets(logits, ["above_5", "at_5"])
    assert subsets.names == ("above_5",)
    assert subsets.selection["positive_fraction"].tolist() == [0.051, 0.05]


def test_protocol_keeps_the_extremes_labels_by_sign_and_splits_in_half(protocol_data):
    _, logits, names = protocol_data
    subsets = metrics.select_attribute_subsets(logits, names, percentile=2)
    for j, name in enumerate(subsets.names):
        column = logits[:, names.index(name)]
        low, high = np.percentile(column, [2, 98])
        train, test = subsets.train_indices[j], subsets.test_indices[j]
        kept = np.concatenate([train, test])
        assert np.intersect1d(train, test).size == 0
        np.testing.assert_array_equal(np.sort(kept), np.flatnonzero((column <= low) | (column >= high)))
        assert kept.size == pytest.approx(0.04 * len(column), abs=2)
        np.testing.assert_array_equal(subsets.train_labels[j], column[train] > 0)
        np.testing.assert_array_equal(subsets.test_labels[j], column[test] > 0)
        # Split within each label: half of each side in train.
        for label in (False, True):
            n_train = (subsets.train_labels[j] == label).sum()
            assert n_train == pytest.approx((subsets.test_labels[j] == label).sum(), abs=1)


def test_protocol_split_is_seeded_per_attribute(protocol_data):
    _, logits, names = protocol_data
    all_attributes = metrics.select_attribute_subsets(logits, names, random_state=3)
    again = metrics.select_attribute_subsets(logits, names, random_state=3)
    only_age = metrics.select_attribute_subsets(logits[:, [1]], ["age"], random_state=3)
    other_seed = metrics.select_attribute_subsets(logits, names, random_state=4)
    np.testing.assert_array_equal(all_attributes.train_indices[1], again.train_indices[1])
    np.testing.assert_array_equal(all_attributes.train_indices[1], only_age.train_indices[0])
    assert not np.array_equal(all_attributes.train_indices[1], other_seed.train_indices[1])


def test_continuous_attribute_uses_the_median_threshold():
    size = np.random.default_rng(9).uniform(1.0, 3.0, 2000)  # all positive: no side below 0
    assert metrics.select_attribute_subsets(size[:, None], ["size"]).names == ()
    subsets = metrics.select_attribute_subsets(size[:, None], ["size"], threshold="median")
    assert subsets.names == ("size",)
    median = np.median(size)
    labels = np.concatenate([subsets.train_labels[0], subsets.test_labels[0]])
    kept = size[np.concatenate([subsets.train_indices[0], subsets.test_indices[0]])]
    np.testing.assert_array_equal(labels, kept > median)
    assert labels.mean() == pytest.approx(0.5)
    mixed = metrics.select_attribute_subsets(
        np.column_stack([size, size - 2]), ["size", "logit"], threshold=["median", 0.0]
    )
    assert mixed.selection["threshold"].tolist() == [pytest.approx(median), 0.0]


def test_attribute_with_too_few_samples_is_dropped_with_a_reason():
    logits = np.linspace(-1, 1, 40)[:, None]  # 2% of 40 samples: fewer than 2 per side
    subsets = metrics.select_attribute_subsets(logits, ["tiny"])
    assert "too few extreme samples" in subsets.dropped["tiny"]


def test_metrics_on_attribute_subsets(protocol_data):
    codes, logits, names = protocol_data
    subsets = metrics.select_attribute_subsets(logits, names)
    result = metrics.dci_per_attribute_subsets(codes, subsets, n_jobs=2)
    assert result.factor_names == ("smile", "age", "glasses")
    np.testing.assert_array_equal(result.n_train, [len(indices) for indices in subsets.train_indices])
    assert result.disentanglement > 0.9 and result.completeness > 0.9 and result.informativeness > 0.95
    # S is stored as float16: the subset metrics read such codes directly.
    assert metrics.mig_per_attribute_subsets(codes.astype(np.float16), subsets).mig > 0.8
    assert metrics.sap_per_attribute_subsets(codes, subsets).sap > 0.4


def test_subset_metrics_refuse_codes_of_other_samples_or_no_attributes(protocol_data):
    codes, logits, names = protocol_data
    subsets = metrics.select_attribute_subsets(logits, names)
    with pytest.raises(metrics.MetricInputError, match="same samples"):
        metrics.dci_per_attribute_subsets(codes[:100], subsets)
    none_kept = metrics.select_attribute_subsets(logits[:, [3]], ["rare"])
    with pytest.raises(metrics.MetricInputError, match="no attribute passed.*rare"):
        metrics.mig_per_attribute_subsets(codes, none_kept)
