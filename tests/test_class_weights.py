import math

import numpy as np
import pytest

from skol_spark.core.class_weights import compute_class_weights, resolve_class_weights

COUNTS = [80, 15, 5]  # N = 100, K = 3


@pytest.mark.parametrize(
    "strategy, expected",
    [
        ("none", [1.0, 1.0, 1.0]),
        ("inverse", [100 / 80, 100 / 15, 100 / 5]),
        ("balanced", [100 / 240, 100 / 45, 100 / 15]),
        ("sqrt_inverse", [math.sqrt(100 / 80), math.sqrt(100 / 15), math.sqrt(100 / 5)]),
    ],
)
def test_strategies_on_a_known_distribution(strategy, expected):
    np.testing.assert_allclose(compute_class_weights(COUNTS, strategy), expected)


def test_effective_number_follows_cui_et_al():
    beta = 0.9
    raw = [(1 - beta) / (1 - beta**n) for n in COUNTS]
    expected = [r / sum(raw) * 3 for r in raw]
    weights = compute_class_weights(COUNTS, "effective_number", beta)
    np.testing.assert_allclose(weights, expected)
    assert weights[2] > weights[1] > weights[0]


def test_absent_class_gets_weight_one():
    assert compute_class_weights([10, 0, 30], "inverse") == [4.0, 1.0, 40 / 30]


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="weightStrategy.*Received: 'median'"):
        compute_class_weights(COUNTS, "median")


def test_explicit_weights_by_name_and_index_override_strategy():
    labels = ["Misc", "Nomenclature", "Description"]
    assert resolve_class_weights(COUNTS, labels, "inverse", {"Nomenclature": 4.0, "2": 3.0}) == [1.0, 4.0, 3.0]
    with pytest.raises(ValueError, match="classWeights key 'Key' is not a label"):
        resolve_class_weights(COUNTS, labels, "none", {"Key": 2.0})
    with pytest.raises(ValueError, match="classWeights key '7' is not a label"):
        resolve_class_weights(COUNTS, labels, "none", {"7": 2.0})
