"""The ``address_accuracy`` metric (SSA@k / SA@k, paper §6.1) and distance accuracy, with hand-computed cases."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modeling_addressclip.address import Address
from modeling_addressclip.metrics import ADDRESS_ACCURACY_PATH, distance_accuracy, load_address_accuracy
from modeling_addressclip.metrics.address_accuracy.address_accuracy import address_accuracy
from modeling_addressclip.metrics.distance import geodesic_distances, threshold_key

REPO_ROOT = Path(__file__).resolve().parents[1]

FORBES_CRAIG_MOREWOOD = "Forbes Avenue between Craig Street and Morewood Avenue, Oakland"
FORBES_CRAIG_BOUQUET = "Forbes Avenue between Bouquet Street and Craig Street, Oakland"
FORBES_SQUIRREL_HILL = "Forbes Avenue between Craig Street and Morewood Avenue, Squirrel Hill"
FIFTH_CRAIG = "Fifth Avenue near Craig Street, Oakland"
FIFTH_BELLEFIELD = "Fifth Avenue between Bellefield Avenue and Craig Street, Oakland"
MANNERHEIMINTIE = "Mannerheimintie near Kaivokatu, Kluuvi"


def test_exact_hit_at_rank_1():
    preds = [[FORBES_CRAIG_MOREWOOD, FIFTH_CRAIG, FIFTH_BELLEFIELD, MANNERHEIMINTIE, FORBES_CRAIG_BOUQUET]]
    assert address_accuracy(preds, [FORBES_CRAIG_MOREWOOD]) == {"ssa@1": 1.0, "ssa@5": 1.0, "sa@1": 1.0, "sa@5": 1.0}


def test_hit_only_at_rank_3_counts_for_5_not_1():
    preds = [[MANNERHEIMINTIE, FIFTH_CRAIG, FORBES_CRAIG_MOREWOOD, FIFTH_BELLEFIELD, FORBES_SQUIRREL_HILL]]
    assert address_accuracy(preds, [FORBES_CRAIG_MOREWOOD]) == {"ssa@1": 0.0, "ssa@5": 1.0, "sa@1": 0.0, "sa@5": 1.0}
    assert address_accuracy(preds, [FORBES_CRAIG_MOREWOOD], k=[1, 2, 3]) == {
        "ssa@1": 0.0,
        "ssa@2": 0.0,
        "ssa@3": 1.0,
        "sa@1": 0.0,
        "sa@2": 0.0,
        "sa@3": 1.0,
    }


def test_wrong_cross_streets_is_street_hit_but_sub_street_miss():
    preds = [[FORBES_CRAIG_BOUQUET]]
    assert address_accuracy(preds, [FORBES_CRAIG_MOREWOOD], k=1) == {"ssa@1": 0.0, "sa@1": 1.0}


def test_same_main_street_other_neighborhood_is_a_street_miss():
    preds = [[FORBES_SQUIRREL_HILL]]
    assert address_accuracy(preds, [FORBES_CRAIG_MOREWOOD], k=1) == {"ssa@1": 0.0, "sa@1": 0.0}


def test_release_form_equals_canonical_form():
    release = "Forbes Avenue, Oakland (Craig Street, Morewood Avenue)"
    assert address_accuracy([[release]], [FORBES_CRAIG_MOREWOOD], k=1) == {"ssa@1": 1.0, "sa@1": 1.0}
    assert address_accuracy([[FORBES_CRAIG_MOREWOOD]], [release], k=1) == {"ssa@1": 1.0, "sa@1": 1.0}
    assert address_accuracy([["Fifth Avenue, Oakland (Craig Street)"]], [FIFTH_CRAIG], k=1) == {
        "ssa@1": 1.0,
        "sa@1": 1.0,
    }


def test_cross_street_order_does_not_matter():
    swapped = "Forbes Avenue between Morewood Avenue and Craig Street, Oakland"
    assert address_accuracy([[swapped]], [FORBES_CRAIG_MOREWOOD], k=1) == {"ssa@1": 1.0, "sa@1": 1.0}


def test_fractions_over_several_queries_and_key_order():
    preds = [
        [FORBES_CRAIG_MOREWOOD, FIFTH_CRAIG],  # SSA hit @1
        [FIFTH_CRAIG, FIFTH_BELLEFIELD],  # SA hit @1 (other sub-street), SSA hit @2
        [FORBES_SQUIRREL_HILL, MANNERHEIMINTIE],  # miss
        [FORBES_CRAIG_BOUQUET, FIFTH_CRAIG],  # SA hit @1 only
    ]
    refs = [FORBES_CRAIG_MOREWOOD, FIFTH_BELLEFIELD, FIFTH_CRAIG, FORBES_CRAIG_MOREWOOD]
    result = address_accuracy(preds, refs, k=[2, 1])
    assert list(result) == ["ssa@1", "ssa@2", "sa@1", "sa@2"]
    assert result == {"ssa@1": 0.25, "ssa@2": 0.5, "sa@1": 0.75, "sa@2": 0.75}
    assert all(type(v) is float for v in result.values())


@pytest.mark.parametrize("bad", ["Forbes Avenue", "", "Forbes Avenue between Craig Street, Oakland"])
def test_unparseable_prediction_raises_with_text_and_index(bad):
    preds = [[FIFTH_CRAIG], [FORBES_CRAIG_MOREWOOD, bad]]
    with pytest.raises(ValueError, match=r"predictions\[1\]\[1\]") as err:
        address_accuracy(preds, [FIFTH_CRAIG, FORBES_CRAIG_MOREWOOD], k=1)
    assert repr(bad) in str(err.value)


def test_unparseable_reference_raises_with_text_and_index():
    # Both sides unparseable: a parser returning blanks would score this 100%.
    with pytest.raises(ValueError, match=r"references\[1\].*'no address here'"):
        address_accuracy([[FIFTH_CRAIG], ["no address here"]], [FIFTH_CRAIG, "no address here"], k=1)


def test_non_string_entries_raise_type_error():
    with pytest.raises(TypeError, match=r"predictions\[0\]\[0\]"):
        address_accuracy([[["nested"]]], [FIFTH_CRAIG], k=1)
    with pytest.raises(TypeError, match=r"predictions\[0\] must be a ranked list"):
        address_accuracy([FIFTH_CRAIG], [FIFTH_CRAIG], k=1)
    with pytest.raises(TypeError, match=r"references\[0\]"):
        address_accuracy([[FIFTH_CRAIG]], [None], k=1)


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="same length.*2 predictions and 1 references"):
        address_accuracy([[FIFTH_CRAIG], [FIFTH_CRAIG]], [FIFTH_CRAIG], k=1)


def test_empty_input_raises():
    with pytest.raises(ValueError, match="at least one query"):
        address_accuracy([], [])


def test_k_larger_than_a_prediction_list_names_the_example():
    preds = [[FIFTH_CRAIG] * 5, [FIFTH_CRAIG] * 3]
    with pytest.raises(ValueError, match=r"k=5 is larger than the 3 prediction\(s\) of example 1"):
        address_accuracy(preds, [FIFTH_CRAIG, FIFTH_CRAIG])
    assert address_accuracy(preds, [FIFTH_CRAIG, FIFTH_CRAIG], k=3)["ssa@3"] == 1.0


@pytest.mark.parametrize("k", [0, -1, [1, 0], []])
def test_k_below_1_raises(k):
    with pytest.raises(ValueError, match="k must be"):
        address_accuracy([[FIFTH_CRAIG]], [FIFTH_CRAIG], k=k)


def test_each_distinct_string_is_parsed_once(monkeypatch):
    calls = []
    original = Address.parse.__func__

    def counting_parse(cls, text):
        calls.append(text)
        return original(cls, text)

    monkeypatch.setattr(Address, "parse", classmethod(counting_parse))
    preds = [[FIFTH_CRAIG, FORBES_CRAIG_MOREWOOD]] * 1000
    address_accuracy(preds, [FORBES_CRAIG_MOREWOOD] * 1000, k=[1, 2])
    assert sorted(calls) == sorted([FIFTH_CRAIG, FORBES_CRAIG_MOREWOOD])


@pytest.fixture(scope="module")
def loaded_metric(tmp_path_factory):
    import os

    cwd = os.getcwd()
    os.chdir(REPO_ROOT)  # the documented relative path is relative to the repository root
    try:
        import evaluate

        return evaluate.load(
            "modeling_addressclip/metrics/address_accuracy",
            cache_dir=str(tmp_path_factory.mktemp("evaluate_cache")),
            keep_in_memory=True,
        )
    finally:
        os.chdir(cwd)


def test_evaluate_load_matches_plain_function(loaded_metric):
    preds = [
        [FORBES_CRAIG_MOREWOOD, FIFTH_CRAIG, FIFTH_BELLEFIELD, MANNERHEIMINTIE, FORBES_CRAIG_BOUQUET],
        [MANNERHEIMINTIE, FIFTH_CRAIG, FORBES_CRAIG_MOREWOOD, FIFTH_BELLEFIELD, FORBES_SQUIRREL_HILL],
        [FORBES_CRAIG_BOUQUET, FIFTH_CRAIG, FIFTH_CRAIG, FIFTH_CRAIG, FIFTH_CRAIG],
        [FORBES_SQUIRREL_HILL, FIFTH_CRAIG, FIFTH_CRAIG, FIFTH_CRAIG, FIFTH_CRAIG],
    ]
    refs = [FORBES_CRAIG_MOREWOOD, FORBES_CRAIG_MOREWOOD, FORBES_CRAIG_MOREWOOD, FORBES_CRAIG_MOREWOOD]
    expected = {"ssa@1": 0.25, "ssa@5": 0.5, "sa@1": 0.5, "sa@5": 0.75}  # query 3: other neighborhood
    assert address_accuracy(preds, refs) == expected
    assert loaded_metric.compute(predictions=preds, references=refs) == expected
    assert loaded_metric.compute(predictions=preds, references=refs, k=[1, 3]) == address_accuracy(
        preds, refs, k=[1, 3]
    )
    assert "AddressCLIP" in loaded_metric.citation
    assert loaded_metric.name == "address_accuracy"


def test_evaluate_load_add_batch_and_errors(loaded_metric):
    loaded_metric.add_batch(predictions=[[FIFTH_CRAIG]], references=[FIFTH_CRAIG])
    loaded_metric.add(predictions=[FORBES_CRAIG_BOUQUET], references=FORBES_CRAIG_MOREWOOD)
    assert loaded_metric.compute(k=1) == {"ssa@1": 0.5, "sa@1": 1.0}
    with pytest.raises(ValueError, match="'Forbes Avenue'"):
        loaded_metric.compute(predictions=[["Forbes Avenue"]], references=[FIFTH_CRAIG], k=1)


def test_load_helper_works_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Path(ADDRESS_ACCURACY_PATH, "address_accuracy.py").is_file()
    metric = load_address_accuracy(cache_dir=str(tmp_path / "cache"), keep_in_memory=True)
    assert metric.compute(predictions=[[FIFTH_CRAIG]], references=[FIFTH_CRAIG], k=1) == {"ssa@1": 1.0, "sa@1": 1.0}


# ---- properties over random address banks -------------------------------------------------

_NAMES = st.sampled_from(["Forbes Avenue", "Fifth Avenue", "Craig Street", "Morewood Avenue", "Bouquet Street"])
_HOODS = st.sampled_from(["Oakland", "Squirrel Hill", "Kluuvi"])


@st.composite
def _address_text(draw):
    main = draw(_NAMES)
    crosses = draw(st.lists(_NAMES.filter(lambda n: n != main), min_size=1, max_size=2, unique=True))
    hood = draw(_HOODS)
    address = Address(main, tuple(crosses), hood)
    if draw(st.booleans()):
        return address.format()
    shuffled = draw(st.permutations(crosses))
    return f"{main}, {hood} ({', '.join(shuffled)})"


@st.composite
def _ranked_queries(draw):
    n_queries = draw(st.integers(1, 8))
    width = draw(st.integers(1, 6))
    preds = [draw(st.lists(_address_text(), min_size=width, max_size=width)) for _ in range(n_queries)]
    refs = [draw(_address_text()) for _ in range(n_queries)]
    return preds, refs, width


def _brute_force(preds, refs, k):
    parse = functools.lru_cache(maxsize=None)(Address.parse)
    ssa = sum(any(parse(p) == parse(r) for p in ranked[:k]) for ranked, r in zip(preds, refs))
    sa = sum(any(parse(p).street_key == parse(r).street_key for p in ranked[:k]) for ranked, r in zip(preds, refs))
    return ssa / len(refs), sa / len(refs)


@settings(max_examples=80, deadline=None)
@given(_ranked_queries())
def test_ssa_below_sa_and_both_monotone_in_k(case):
    preds, refs, width = case
    ks = list(range(1, width + 1))
    result = address_accuracy(preds, refs, k=ks)
    for k in ks:
        assert 0.0 <= result[f"ssa@{k}"] <= result[f"sa@{k}"] <= 1.0
        assert (result[f"ssa@{k}"], result[f"sa@{k}"]) == pytest.approx(_brute_force(preds, refs, k))
    for lo, hi in zip(ks, ks[1:]):
        assert result[f"ssa@{lo}"] <= result[f"ssa@{hi}"]
        assert result[f"sa@{lo}"] <= result[f"sa@{hi}"]


# ---- distance accuracy: the top-1 address's place against where the photo was taken ----------

WGS84_A = 6_378_137.0
WGS84_E2 = (1 / 298.257223563) * (2 - 1 / 298.257223563)


def _meridian_arc_m(latitude: float, delta_deg: float) -> float:
    """Hand computation: a small step along a meridian is M(phi) * dphi, M = a(1-e^2) / (1 - e^2 sin^2 phi)^1.5."""
    phi = math.radians(latitude + delta_deg / 2)
    return WGS84_A * (1 - WGS84_E2) / (1 - WGS84_E2 * math.sin(phi) ** 2) ** 1.5 * math.radians(delta_deg)


def test_distance_matches_hand_computed_meridian_and_equator_arcs():
    # 0.001 deg of latitude is ~110.6 m at the equator and ~111.4 m at 60 N; 0.001 deg of longitude on the
    # equator is a * 0.001 deg in radians = 111.32 m.
    reference = [(0.0, 0.0), (60.0, 24.9), (0.0, 10.0)]
    predicted = [(0.001, 0.0), (60.001, 24.9), (0.0, 10.001)]
    metres = geodesic_distances(predicted, reference)
    expected = [_meridian_arc_m(0.0, 0.001), _meridian_arc_m(60.0, 0.001), WGS84_A * math.radians(0.001)]
    assert metres.tolist() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx([110.574, 111.412, 111.319], abs=1e-3)


def test_distance_accuracy_thresholds_and_median():
    # errors along the meridian at 60 N: 0 m, ~11 m, ~56 m, ~111 m, ~1114 m
    deltas = [0.0, 0.0001, 0.0005, 0.001, 0.01]
    reference = [(60.0, 24.9)] * len(deltas)
    predicted = [(60.0 + d, 24.9) for d in deltas]
    result = distance_accuracy(predicted, reference)
    assert list(result) == ["median_error_m", "within_25m", "within_100m", "within_1km"]
    assert result["median_error_m"] == pytest.approx(_meridian_arc_m(60.0, 0.0005), abs=1e-6)
    assert (result["within_25m"], result["within_100m"], result["within_1km"]) == (0.4, 0.6, 0.8)
    even = distance_accuracy(predicted[:4], reference[:4])  # the median of an even count: the mean of the middle two
    assert even["median_error_m"] == pytest.approx((_meridian_arc_m(60, 0.0001) + _meridian_arc_m(60, 0.0005)) / 2)
    assert distance_accuracy(np.asarray(predicted), np.asarray(reference)) == result  # arrays work as lists do


def test_distance_accuracy_threshold_keys():
    predicted, reference = [(60.001, 24.9)], [(60.0, 24.9)]  # ~111 m
    result = distance_accuracy(predicted, reference, thresholds_m=[5000, 2.5, 1500, 112])
    assert list(result) == ["median_error_m", "within_2.5m", "within_112m", "within_1500m", "within_5km"]
    assert [result[k] for k in list(result)[1:]] == [0.0, 1.0, 1.0, 1.0]
    assert threshold_key(1000) == "within_1km" and threshold_key(25) == "within_25m"
    assert list(distance_accuracy(predicted, reference, thresholds_m=100)) == ["median_error_m", "within_100m"]
    for bad in ([], [0], [-5], [float("inf")]):
        with pytest.raises(ValueError, match="thresholds_m"):
            distance_accuracy(predicted, reference, thresholds_m=bad)


@pytest.mark.parametrize(
    ("predicted", "reference", "message"),
    [
        ([(60.0, 24.9), None], [(60.0, 24.9)] * 2, r"predicted\[1\] is None"),
        ([(60.0, 24.9)] * 2, [(60.0, 24.9), (float("nan"), 24.9)], r"reference\[1\] has a non-finite coordinate"),
        ([(60.0, None)], [(60.0, 24.9)], r"predicted\[0\] must hold two numbers"),
        ([(60.0, 24.9, 3.0)], [(60.0, 24.9)], r"predicted\[0\] must be a \(latitude, longitude\) pair"),
        ([(95.0, 24.9)], [(60.0, 24.9)], r"predicted\[0\] = \(95.0, 24.9\) is not a \(latitude in \[-90, 90\]"),
        ([(60.0, 24.9)] * 2, [(60.0, 24.9)] * 3, "same length, got 2 predicted and 3 reference"),
        ([], [], "at least one query"),
    ],
)
def test_distance_accuracy_bad_coordinates_raise_naming_the_index(predicted, reference, message):
    with pytest.raises(ValueError, match=message):
        distance_accuracy(predicted, reference)


def test_evaluate_wrapper_adds_distance_accuracy_with_coordinates(loaded_metric):
    preds = [[FIFTH_CRAIG], [FORBES_CRAIG_MOREWOOD], [FIFTH_BELLEFIELD]]
    refs = [FIFTH_CRAIG, FIFTH_CRAIG, FIFTH_CRAIG]
    here = (40.4445, -79.9490)
    placed = [here, (40.4455, -79.9490), (40.4540, -79.9490)]  # 0 m, ~111 m, ~1055 m north
    without = loaded_metric.compute(predictions=preds, references=refs, k=1)
    assert without == {"ssa@1": 1 / 3, "sa@1": 2 / 3}
    result = loaded_metric.compute(
        predictions=preds, references=refs, k=1, prediction_coordinates=placed, reference_coordinates=[here] * 3
    )
    assert result == {**without, **distance_accuracy(placed, [here] * 3)}
    assert (result["within_25m"], result["within_100m"], result["within_1km"]) == (1 / 3, 1 / 3, 2 / 3)
    assert result["median_error_m"] == pytest.approx(_meridian_arc_m(40.4445, 0.001), abs=1e-6)
    loaded_metric.add_batch(predictions=preds[:2], references=refs[:2])  # batches added; coordinates at compute
    loaded_metric.add(predictions=preds[2], references=refs[2])
    later = loaded_metric.compute(k=1, prediction_coordinates=placed, reference_coordinates=[here] * 3)
    assert later == result


def test_evaluate_wrapper_refuses_partial_or_misaligned_coordinates(loaded_metric):
    preds, refs, here = [[FIFTH_CRAIG], [FIFTH_CRAIG]], [FIFTH_CRAIG, FIFTH_CRAIG], (40.4445, -79.949)
    with pytest.raises(ValueError, match="prediction_coordinates was given alone"):
        loaded_metric.compute(predictions=preds, references=refs, k=1, prediction_coordinates=[here, here])
    with pytest.raises(ValueError, match="reference_coordinates has 1 entries for 2 references"):
        loaded_metric.compute(
            predictions=preds, references=refs, k=1, prediction_coordinates=[here, here], reference_coordinates=[here]
        )
    with pytest.raises(ValueError, match=r"reference\[0\] is None"):
        loaded_metric.compute(
            predictions=preds,
            references=refs,
            k=1,
            prediction_coordinates=[here, here],
            reference_coordinates=[None, here],
        )
