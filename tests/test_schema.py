"""The IAL schema contract: rows validate strictly, splits follow the paper, the directory loads."""

from __future__ import annotations

import math

import datasets
import pytest

from dataset_scripts.schema import (
    IAL_FEATURES,
    SPLITS,
    split_by_location,
    validate_row,
    write_hub_dataset,
)
from fixtures.bad_inputs import ADDRESS, good_row


def test_features_are_the_architecture_schema():
    assert list(IAL_FEATURES) == [
        "image", "address", "main_street", "cross_streets", "neighborhood", "caption", "latitude", "longitude",
        "utm_east", "utm_north", "utm_zone", "location_id", "heading",
    ]  # fmt: skip
    assert IAL_FEATURES["heading"].dtype == "float32"
    assert IAL_FEATURES["latitude"].dtype == "float64"
    assert SPLITS == ("train", "database", "query")


def test_good_row_passes_also_with_unknown_heading():
    validate_row(good_row(), "row 0")
    validate_row({**good_row(), "heading": math.nan, "caption": ""}, "row 1")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"address": "Mannerheimintie, Kamppi"}, "address"),
        ({"main_street": "Aleksanterinkatu"}, "main_street"),
        ({"cross_streets": ["Runeberginkatu"]}, "cross_streets"),
        ({"cross_streets": ["A", "B", "C"]}, "cross_streets"),
        ({"neighborhood": "Kluuvi"}, "neighborhood"),
        ({"latitude": math.nan}, "latitude"),
        ({"longitude": "24.9"}, "longitude"),
        ({"utm_east": 100.0}, "utm_east"),
        ({"utm_zone": "99Z"}, "utm_zone"),
        ({"heading": math.inf}, "heading"),
        ({"heading": 400.0}, "heading"),
        ({"heading": None}, "heading"),
        ({"image": None}, "image"),
        ({"location_id": ""}, "location_id"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_row_raises_naming_the_row_and_field(change, field):
    with pytest.raises(ValueError, match=rf"train row 7: field '{field}'"):
        validate_row({**good_row(), **change}, "train row 7")


def test_missing_field_is_named():
    row = good_row()
    del row["utm_north"]
    with pytest.raises(ValueError, match="field 'utm_north' is missing"):
        validate_row(row, "row 3")


def test_split_is_7_2_1_by_location_and_query_addresses_are_covered_by_train():
    locations = [f"loc-{i}" for i in range(1000)]
    addresses = [f"address {i % 50}" for i in range(1000)]
    split = split_by_location(locations, addresses, seed=1)
    counts = split.counts()
    assert sum(counts.values()) == 1000
    assert abs(counts["train"] - 700) <= split.moved_to_train + 1
    assert abs(counts["query"] - 100) <= split.moved_to_train + 1
    train = {addresses[i] for i, loc in enumerate(locations) if split.assignment[loc] == "train"}
    assert {addresses[i] for i, loc in enumerate(locations) if split.assignment[loc] != "train"} <= train


def test_split_moves_locations_of_uncovered_addresses_and_reports_it():
    locations = [f"loc-{i}" for i in range(20)]
    addresses = [f"unique {i}" for i in range(20)]  # every address has one location
    split = split_by_location(locations, addresses, seed=0)
    assert set(split.assignment.values()) == {"train"}
    assert split.moved_to_train == 6


def test_split_is_deterministic_and_per_row_input_is_accepted():
    locations = [f"loc-{i // 4}" for i in range(400)]  # four views per location
    addresses = [f"address {i // 40}" for i in range(400)]
    first = split_by_location(locations, addresses, seed=3)
    assert first == split_by_location(locations, addresses, seed=3)
    assert len(first.assignment) == 100
    with pytest.raises(ValueError, match="two addresses"):
        split_by_location(["a", "a"], ["x", "y"])


def test_written_directory_loads_with_exact_schema_also_streaming(tmp_path):
    rows = {"train": [good_row(i) for i in range(5)], "database": [good_row(5)], "query": [good_row(6)]}
    out = write_hub_dataset(
        tmp_path / "ds", {s: (lambda r=r: iter(r)) for s, r in rows.items()}, "# Card", license="odbl", rows_per_shard=2
    )
    assert sorted(p.name for p in (out / "data").iterdir())[:2] == [
        "database-00000-of-00001.parquet",
        "query-00000-of-00001.parquet",
    ]
    assert (out / "data" / "train-00002-of-00003.parquet").is_file()
    card = (out / "README.md").read_text()
    assert "license: odbl" in card and "path: data/train-*" in card
    loaded = datasets.load_dataset(str(out), download_mode="force_redownload")
    assert list(loaded) == list(SPLITS)
    assert all(loaded[s].features == IAL_FEATURES for s in SPLITS)
    assert loaded["train"]["location_id"] == [f"loc-{i}" for i in range(5)]
    streamed = datasets.load_dataset(str(out), streaming=True)
    assert streamed["query"].features == IAL_FEATURES
    assert next(iter(streamed["query"]))["address"] == ADDRESS


def test_invalid_row_leaves_no_directory(tmp_path):
    bad = {**good_row(), "latitude": math.nan}
    with pytest.raises(ValueError, match="query row 0: field 'latitude'"):
        write_hub_dataset(tmp_path / "ds", {"train": lambda: iter([good_row()]), "query": lambda: iter([bad])}, "x",
                          license="odbl")  # fmt: skip
    assert list(tmp_path.iterdir()) == []
