"""Address: one canonical text with an exact round trip; the release form parses; bad text raises."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modeling_addressclip.address import Address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Forbes Avenue between Craig Street and Morewood Avenue, Oakland",
            Address("Forbes Avenue", ("Craig Street", "Morewood Avenue"), "Oakland"),
        ),
        ("Mannerheimintie near Kaivokatu, Kluuvi", Address("Mannerheimintie", ("Kaivokatu",), "Kluuvi")),
        (
            "Forbes Avenue, Oakland (Craig Street, Morewood Avenue)",
            Address("Forbes Avenue", ("Morewood Avenue", "Craig Street"), "Oakland"),
        ),
        (
            "Forbes Avenue, Oakland (Craig Street & Morewood Avenue)",
            Address("Forbes Avenue", ("Craig Street", "Morewood Avenue"), "Oakland"),
        ),
        ("Töölönkatu, Töölö (Runeberginkatu)", Address("Töölönkatu", ("Runeberginkatu",), "Töölö")),
    ],
)
def test_parse_canonical_and_release_forms(text, expected):
    assert Address.parse(text) == expected


def test_cross_street_order_does_not_matter_and_street_key():
    a = Address("Forbes Avenue", ("Morewood Avenue", "Craig Street"), "Oakland")
    assert a == Address("Forbes Avenue", ("Craig Street", "Morewood Avenue"), "Oakland")
    assert a.format() == "Forbes Avenue between Craig Street and Morewood Avenue, Oakland"
    assert a.street_key == ("Forbes Avenue", "Oakland")


@pytest.mark.parametrize(
    "address",
    [
        Address("Rock and Roll Street", ("Between Lane", "Near Road"), "North, (East)"),
        Address("A and", ("between", "x near"), "N"),
        Address("Back\\slash", ("and B", "C between and"), "Töölö"),
        Address("Main (old)", ("Jr., Street",), "Downtown"),
    ],
)
def test_round_trip_with_separator_words_inside_names(address):
    assert Address.parse(address.format()) == address


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Forbes Avenue",
        "Forbes Avenue, Oakland",
        "Forbes between Craig, Oakland",
        "A near B,",
        "A near B, C\\",
        "A between B and C and D, E",
        "Forbes Avenue, Oakland ()",
        "A near B (x), C",
    ],
)
def test_bad_text_raises_naming_the_text(text):
    with pytest.raises(ValueError, match="unparseable address|Address"):
        Address.parse(text)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", ("B",), "N"), "main_street"),
        (("A", (), "N"), "1 or 2 cross streets"),
        (("A", ("B", "C", "D"), "N"), "1 or 2 cross streets"),
        (("A", ("B", "B"), "N"), "repeat"),
        (("A", ("B",), " N"), "outer whitespace"),
        (("A", ("B\n",), "N"), "outer whitespace|control"),
    ],
)
def test_invalid_fields_raise(args, message):
    with pytest.raises(ValueError, match=message):
        Address(*args)


def test_cross_streets_must_be_a_list_not_a_string():
    with pytest.raises(TypeError, match="list of names"):
        Address("A", "B", "N")


names = (
    st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")), min_size=1, max_size=30)
    .map(str.strip)
    .filter(bool)
)


@settings(max_examples=300, deadline=None)
@given(main=names, crosses=st.lists(names, min_size=1, max_size=2, unique=True), neighborhood=names)
def test_round_trip_over_arbitrary_unicode_names(main, crosses, neighborhood):
    address = Address(main, tuple(crosses), neighborhood)
    assert Address.parse(address.format()) == address
