"""The ``address_accuracy`` metric (SSA@k / SA@k, paper §6.1) with hand-computed cases."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modeling_addressclip.address import Address
from modeling_addressclip.metrics import ADDRESS_ACCURACY_PATH, load_address_accuracy
from modeling_addressclip.metrics.address_accuracy.address_accuracy import address_accuracy

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
