"""Property-based tests (hypothesis): every property of ``fixtures.properties``, and the cases they found.

The properties (addresses, the geography loss, the metric, UTM, row validation) live in
``fixtures/properties.py``, shared with ``benchmarks.reliability``; here each runs with
``ADDRESSCLIP_FUZZ_EXAMPLES`` examples (default 100).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import strategies as st

from fixtures.bad_inputs import bad_rows, check_row_case
from fixtures.properties import PROPERTIES, Property
from modeling_addressclip.address import Address
from modeling_addressclip.losses import normalized_utm


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
