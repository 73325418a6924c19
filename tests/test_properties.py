"""Property-based tests (hypothesis) of addresses, the geography loss, the metric, UTM and row validation.

Each property is a :class:`Property` in ``PROPERTIES``: a strategy and a check, run here with
``ADDRESSCLIP_FUZZ_EXAMPLES`` examples each (default 100) and by ``benchmarks/reliability.py`` with
as many as it is told. Complements test_address.py / test_metric.py, which fuzz plain Unicode names
and SSA/SA against a brute force over a fixed street pool.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hypothesis
import numpy as np
import pytest
import torch
from bad_inputs import bad_rows, check_row_case, good_row
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dataset_scripts.schema import IAL_FEATURES, validate_row
from modeling_addressclip.address import Address
from modeling_addressclip.geo import latlon_to_utm, parse_utm_zone, utm_to_latlon, utm_zone_for
from modeling_addressclip.losses import geography_distance_matrix, geography_matching_loss, normalized_utm
from modeling_addressclip.metrics.address_accuracy.address_accuracy import address_accuracy

FUZZ_EXAMPLES = int(os.environ.get("ADDRESSCLIP_FUZZ_EXAMPLES", "100"))
EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class FuzzResult:
    """How many examples a property ran, and the (shrunk) failure hypothesis found, if any."""

    examples: int
    error: Exception | None


@dataclass(frozen=True)
class Property:
    """A named check over the cases of a strategy."""

    name: str
    strategy: st.SearchStrategy
    check: Callable[[Any], None]

    def fuzz(self, max_examples: int = FUZZ_EXAMPLES, seed: int | None = None, database: bool = True) -> FuzzResult:
        """Run ``check`` on up to ``max_examples`` generated cases; a failure comes back shrunk, not raised."""
        examples = 0

        def example(case) -> None:
            nonlocal examples
            examples += 1
            self.check(case)

        example.__name__ = example.__qualname__ = self.name  # the example database's key and the report's name
        options = {} if database else {"database": None}
        test = settings(
            max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow], **options
        )(given(self.strategy)(example))
        if seed is not None:
            test = hypothesis.seed(seed)(test)
        try:
            test()
        except Exception as err:  # the failure is the result, not raised
            return FuzzResult(examples, err)
        return FuzzResult(examples, None)


# ----------------------------------------------------------------------------- addresses
# Name fragments that look like the canonical form's structure: each must be escaped or rejected.
SEPARATOR_PIECES = ("between", "and", "near", " between ", " and ", " near ", "between ", "near ", "and ")
SEPARATOR_PIECES += (",", ", ", "(", ")", "\\", "\\ ", " ", "  ", "&", "/", ";", "\u2028", "\xa0")
PRINTABLE = st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn"))
FRAGMENTS = st.one_of(st.sampled_from(SEPARATOR_PIECES), st.text(PRINTABLE, min_size=1, max_size=4))
NAMES = st.lists(FRAGMENTS, min_size=1, max_size=6).map(lambda parts: "".join(parts).strip()).filter(bool)
FIELDS = ("main_street", "cross_streets", "neighborhood")


@st.composite
def addresses(draw, names: st.SearchStrategy[str] = NAMES) -> Address:
    """An address with one or two distinct cross streets, every name drawn from ``names``."""
    crosses = draw(st.lists(names, min_size=1, max_size=2, unique=True))
    return Address(draw(names), tuple(crosses), draw(names))


def check_round_trip(address: Address) -> None:
    """``parse(format(a)) == a``, and the canonical text is a fixed point."""
    text = address.format()
    assert Address.parse(text) == address, text
    assert Address.parse(text).format() == text


@st.composite
def invalid_names(draw) -> tuple[str, str, str]:
    """(field, bad name, what the error must say): empty, outer whitespace, or an unprintable character."""
    name = draw(NAMES)
    control = draw(st.characters(whitelist_categories=("Cc", "Cf", "Cs", "Co", "Cn")))
    cut = draw(st.integers(0, len(name)))
    bad, message = draw(
        st.sampled_from(
            [
                ("", "non-empty"),
                (" " + name, "outer whitespace"),
                (name + "\t", "outer whitespace"),
                (name[:cut] + control + name[cut:], "control|outer whitespace"),
            ]
        )
    )
    return draw(st.sampled_from(FIELDS)), bad, message


def check_invalid_name_raises(case: tuple[str, str, str]) -> None:
    field, bad, message = case
    parts = {"main_street": "Main", "cross_streets": ("Cross",), "neighborhood": "Hood"}
    parts[field] = (bad,) if field == "cross_streets" else bad
    with pytest.raises(ValueError, match=rf"Address\.{field}.*({message})"):
        Address(**parts)


# Address-like text: the canonical and release forms filled with fragments, so most cases are near misses.
_FILL = st.lists(FRAGMENTS, max_size=4).map("".join)
ADDRESS_TEXT = st.one_of(
    st.tuples(_FILL, _FILL, _FILL, _FILL).map(lambda t: f"{t[0]} between {t[1]} and {t[2]}, {t[3]}"),
    st.tuples(_FILL, _FILL, _FILL).map(lambda t: f"{t[0]} near {t[1]}, {t[2]}"),
    st.tuples(_FILL, _FILL, _FILL).map(lambda t: f"{t[0]}, {t[1]} ({t[2]})"),
    st.text(max_size=30),
)


def check_parse_is_total(text: str) -> None:
    """Any text parses to an address that round-trips, or raises a ValueError quoting it."""
    try:
        address = Address.parse(text)
    except ValueError as err:
        assert repr(text) in str(err), (text, err)
        return
    check_round_trip(address)


# ----------------------------------------------------------------------------- geography loss
EXTREMES = [0.0, 5e-324, -5e-324, 1e-300, 1.7976931348623157e308, -1.7976931348623157e308, 1e308, -1e308]
FINITE = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(EXTREMES)


@st.composite
def batches_with_duplicates(draw, coordinate: st.SearchStrategy[float] = FINITE) -> np.ndarray:
    """(N, 2) coordinates, N in 1..6, drawn from a pool of at most N points (so often with repeats)."""
    n = draw(st.integers(1, 6))
    pool = draw(st.lists(st.tuples(coordinate, coordinate), min_size=1, max_size=n))
    return np.array([pool[i] for i in draw(st.lists(st.integers(0, len(pool) - 1), min_size=n, max_size=n))])


@st.composite
def geography_cases(draw) -> tuple[np.ndarray, np.ndarray]:
    """Any finite float64 coordinates and float32 embeddings (zero rows included) of one batch."""
    utm = draw(batches_with_duplicates())
    dim = draw(st.integers(1, 4))
    values = st.floats(-1e6, 1e6, width=32) | st.just(0.0)
    return utm, draw(hnp.arrays(np.float32, (len(utm), dim), elements=values))


def check_loss_is_finite(case: tuple[np.ndarray, np.ndarray]) -> None:
    utm, embeds = case
    for target in ("similarity", "distance"):
        v = torch.tensor(embeds, requires_grad=True)
        loss = geography_matching_loss(v, torch.tensor(utm, dtype=torch.float64), target)
        loss.backward()
        bound = 4.0 if target == "similarity" else 9.0  # |cosine - goal| <= 2 (goal in [-1, 1]) or 3 ([0, 2])
        assert math.isfinite(loss.item()) and 0.0 <= loss.item() <= bound + 1e-5, (target, loss)
        assert torch.isfinite(v.grad).all(), (target, v.grad)


def check_target_is_a_metric(utm: np.ndarray) -> None:
    """D^U is symmetric, zero on the diagonal, in [0, 2], and obeys the triangle inequality."""
    u = normalized_utm(torch.tensor(utm))
    assert ((u >= 0) & (u <= 1)).all(), u
    for axis in range(2):  # a non-constant axis spans exactly [0, 1], a constant one is all 0
        column = u[:, axis]
        expected = (0.0, 1.0) if utm[:, axis].max() > utm[:, axis].min() else (0.0, 0.0)
        assert (column.min().item(), column.max().item()) == expected, (axis, column)
    d = geography_distance_matrix(torch.tensor(utm))
    assert torch.equal(d, d.t()) and (d.diagonal() == 0).all(), d
    assert ((d >= 0) & (d <= 2)).all(), d
    assert (d[:, None, :] <= d[:, :, None] + d[None, :, :] + 1e-12).all(), d


GRID = st.integers(0, 4000).map(lambda i: 0.5 * i)  # metres on a half-metre grid over 2 km


@st.composite
def invariance_cases(draw):
    """A city-sized batch in UTM metres, a translation, a uniform and a per-axis scale, a permutation."""
    base = np.array([draw(st.integers(100_000, 900_000)), draw(st.integers(0, 9_990_000))], dtype=np.float64)
    utm = base + draw(batches_with_duplicates(GRID))
    shift = np.array([draw(st.integers(-90_000, 90_000)), draw(st.integers(-1_000_000, 1_000_000))]) * 0.5
    scale = draw(st.floats(1e-3, 1e3))
    axis_scale = np.array([draw(st.floats(1e-3, 1e3)), draw(st.floats(1e-3, 1e3))])
    embeds = draw(hnp.arrays(np.float64, (len(utm), 3), elements=st.floats(-1, 1)))
    return utm, shift, scale, axis_scale, embeds, draw(st.permutations(range(len(utm))))


def _resolution(utm: np.ndarray, magnitude: float) -> float:
    """Bound on the rounding error that scaling coordinates of up to ``magnitude`` puts into D^U of ``utm``."""
    spans = np.ptp(utm, axis=0)
    smallest = spans[spans > 0].min() if (spans > 0).any() else 1.0
    return 64 * EPS * (magnitude / smallest + 1.0)


def check_invariances(case) -> None:
    """Translating, scaling (uniformly or per axis) or permuting the batch leaves D^U and the loss unchanged."""
    utm, shift, scale, axis_scale, embeds, order = case
    d = geography_distance_matrix(torch.tensor(utm))
    loss = geography_matching_loss(torch.tensor(embeds), torch.tensor(utm)).item()
    tolerance = _resolution(utm, float(np.abs(np.concatenate([utm, utm + shift])).max()))
    # On the grid the translation is exact in float64, and so is the result.
    assert torch.equal(geography_distance_matrix(torch.tensor(utm + shift)), d)
    for moved in (utm * scale, (utm + shift) * scale, utm * axis_scale):
        assert torch.allclose(geography_distance_matrix(torch.tensor(moved)), d, rtol=0, atol=tolerance)
        moved_loss = geography_matching_loss(torch.tensor(embeds), torch.tensor(moved)).item()
        assert math.isclose(moved_loss, loss, rel_tol=1e-12, abs_tol=8 * tolerance)
    order = list(order)
    assert torch.equal(geography_distance_matrix(torch.tensor(utm[order])), d[order][:, order])
    permuted = geography_matching_loss(torch.tensor(embeds[order]), torch.tensor(utm[order])).item()
    assert math.isclose(permuted, loss, rel_tol=1e-12, abs_tol=1e-15)


# ----------------------------------------------------------------------------- metric
# A few fixed names so that banks share main streets and neighborhoods (SA hits without SSA hits).
BANK_NAMES = st.sampled_from(["Mannerheimintie", "Töölönkatu", "and", "Rue (Nord)", "街"]) | NAMES


@st.composite
def ranked_banks(draw):
    """A bank of distinct addresses, and per query a reference from it and a full ranking of the bank."""
    bank = draw(st.lists(addresses(BANK_NAMES), min_size=1, max_size=8, unique=True))
    texts = [a.format() for a in bank]
    queries = draw(st.integers(1, 6))
    references = [draw(st.sampled_from(texts)) for _ in range(queries)]
    rankings = [[texts[i] for i in draw(st.permutations(range(len(texts))))] for _ in range(queries)]
    return rankings, references


def check_metric_bounds(case) -> None:
    """0 <= SSA@k <= SA@k <= 1, both non-decreasing in k, 1 at k = |bank|, SSA@1 = top-1 exact hits."""
    rankings, references = case
    ks = list(range(1, len(rankings[0]) + 1))
    result = address_accuracy(rankings, references, k=ks)
    for k in ks:
        assert 0.0 <= result[f"ssa@{k}"] <= result[f"sa@{k}"] <= 1.0, result
    for low, high in zip(ks, ks[1:]):
        assert result[f"ssa@{low}"] <= result[f"ssa@{high}"] and result[f"sa@{low}"] <= result[f"sa@{high}"], result
    assert result[f"ssa@{ks[-1]}"] == result[f"sa@{ks[-1]}"] == 1.0, result
    top1 = sum(ranked[0] == reference for ranked, reference in zip(rankings, references)) / len(references)
    assert result["ssa@1"] == pytest.approx(top1)


# ----------------------------------------------------------------------------- UTM
BAND_EDGES = [-80.0 + 8 * i for i in range(21)] + [56.0, 64.0, 84.0, 0.0]
ZONE_EDGES = [-180.0 + 6 * i for i in range(61)] + [3.0, 9.0, 21.0, 33.0]  # + Norway/Svalbard exceptions


def _near(edges: list[float], low: float, high: float) -> st.SearchStrategy[float]:
    """Values at or within a micro-degree of ``edges``, clipped to [low, high]."""
    offsets = st.sampled_from([0.0, 1e-9, -1e-9, 1e-6, -1e-6])
    return st.tuples(st.sampled_from(edges), offsets).map(lambda p: min(max(p[0] + p[1], low), high))


LATITUDES = st.floats(-80.0, 84.0) | _near(BAND_EDGES, -80.0, 84.0)
LONGITUDES = st.floats(-180.0, 180.0) | _near(ZONE_EDGES, -180.0, 180.0)


def check_utm_round_trip(case: tuple[float, float, int]) -> None:
    """lat/lon -> UTM (own zone or a neighbour, as a dataset crossing a border uses) -> lat/lon within 1e-7°."""
    lat, lon, zone_offset = case
    own = utm_zone_for(lat, lon)
    number, _ = parse_utm_zone(own)
    zone = f"{(number - 1 + zone_offset) % 60 + 1}{own[-1]}"
    east, north, used = latlon_to_utm(lat, lon, zone)
    assert used == zone and np.isfinite(east).all() and np.isfinite(north).all()
    if zone_offset == 0:  # in its own zone a point is within the grid's false easting/northing (to 1 mm)
        # (a latitude within ~1e-14 below 0 gets band N, (lat + 80) // 8 being rounded: north is then -1e-9 m)
        assert 0 < east[0] < 1_000_000 and -1e-3 <= north[0] <= 10_000_000, (east, north)
    back_lat, back_lon = utm_to_latlon(east, north, zone)
    assert abs(back_lat[0] - lat) <= 1e-7, (lat, back_lat)
    assert abs((back_lon[0] - lon + 180.0) % 360.0 - 180.0) <= 1e-7, (lon, back_lon)


# ----------------------------------------------------------------------------- row validation
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers() | st.sampled_from([10**400, -(10**400)]),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.lists(st.one_of(st.text(max_size=4), st.integers(), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=3), st.one_of(st.binary(max_size=3), st.text(max_size=3), st.none()), max_size=2),
)


@st.composite
def mutated_rows(draw) -> dict:
    """A valid row with one field replaced by anything, or removed, or an extra key of any hashable type."""
    row = good_row()
    action = draw(st.sampled_from(["replace", "remove", "extra"]))
    name = draw(st.sampled_from(list(IAL_FEATURES)))
    if action == "replace":
        row[name] = draw(ANY_VALUE)
    elif action == "remove":
        del row[name]
    else:
        row[draw(st.one_of(st.text(max_size=4), st.integers(), st.tuples(st.integers())))] = draw(ANY_VALUE)
    return row


def check_validation_is_clear(row: dict) -> None:
    """``validate_row`` accepts a row or raises a ValueError naming the row and a field; nothing else."""
    try:
        validate_row(row, "row 3")
    except ValueError as err:
        assert str(err).startswith("row 3: field "), err


PROPERTIES = (
    Property("address_round_trip", addresses(), check_round_trip),
    Property("address_invalid_name_raises", invalid_names(), check_invalid_name_raises),
    Property("address_parse_is_total", ADDRESS_TEXT, check_parse_is_total),
    Property("geography_loss_finite", geography_cases(), check_loss_is_finite),
    Property("geography_target_is_a_metric", batches_with_duplicates(), check_target_is_a_metric),
    Property("geography_invariances", invariance_cases(), check_invariances),
    Property("metric_bounds_and_monotone", ranked_banks(), check_metric_bounds),
    Property("utm_round_trip", st.tuples(LATITUDES, LONGITUDES, st.sampled_from([0, 0, -1, 1])), check_utm_round_trip),
    Property("validate_row_errors_are_clear", mutated_rows(), check_validation_is_clear),
)


@pytest.mark.parametrize("prop", PROPERTIES, ids=lambda prop: prop.name)
def test_property(prop: Property):
    result = prop.fuzz()
    if result.error is not None:
        raise result.error
    assert result.examples > 0


def test_fuzz_reports_a_failure_with_its_example_count():
    failing = Property("fails_from_5", st.integers(0, 10), lambda n: None if n < 5 else 1 / 0).fuzz(50, database=False)
    assert isinstance(failing.error, ZeroDivisionError) and failing.examples > 1
    assert Property("passes", st.integers(0, 3), lambda n: None).fuzz(50, seed=1, database=False).error is None


@pytest.mark.parametrize("case", bad_rows(), ids=lambda case: case.name)
def test_every_generated_malformed_row_is_refused_naming_its_field(case):
    check_row_case(case)


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (Address("A", ("between X",), "N"), "A near between X, N"),  # found by address_round_trip
        (Address("A", ("between  between",), "N"), "A near between \\ between, N"),
    ],
)
def test_near_form_with_a_cross_street_starting_with_between(address, text):
    assert address.format() == text and Address.parse(text) == address


def test_huge_coordinates_do_not_overflow_the_normalization():
    """max - min of coordinates near +-DBL_MAX overflowed to inf and gave NaN (found by geography_loss_finite)."""
    utm = torch.tensor([[-1e308, 0.0], [1e308, 1.0], [0.0, 0.5]], dtype=torch.float64)
    assert torch.equal(normalized_utm(utm), torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]], dtype=torch.float64))
