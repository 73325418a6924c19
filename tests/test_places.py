"""Every prediction carries its place: the address bank's places are validated, saved and returned by the pipeline.

(A saved directory's places loading as remote code in a process without this package: tests/test_remote_code.py.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from huggingface_hub.errors import StrictDataclassClassValidationError
from PIL import Image
from transformers import pipeline

from fixtures.tiny_models import ADDRESSES, save_tiny_model, tiny_config
from modeling_addressclip import AddressCLIPConfig, AddressCLIPModel, ImageAddressLocalizationPipeline
from modeling_addressclip.pipeline_addressclip import TASK

# Aligned with ADDRESSES: full lines, one unknown place, an empty line, a one-point line, a numpy line.
PLACES = [
    {"latitude": 60.16952, "longitude": 24.93885, "line": [[60.1690, 24.9386], [60.1700, 24.9391]]},
    {"latitude": 60.16812, "longitude": 24.94076, "line": [(60.1677, 24.9405), (60.1684, 24.9410)]},
    None,
    {"latitude": 60.17390, "longitude": 24.92780, "line": []},
    {"latitude": 60.16310, "longitude": 24.93720, "line": [[60.1631, 24.9372]]},
    {"latitude": 60.16250, "longitude": 24.93400, "line": np.array([[60.16249, 24.93398], [60.16251, 24.93402]])},
]
FREE_TEXT = "Broadway, Manhattan"


def _as_saved(place):
    """What a place becomes in the config: floats, a list of [lat, lon] lists."""
    if place is None:
        return None
    line = place["line"].tolist() if isinstance(place["line"], np.ndarray) else place["line"]
    return {"latitude": place["latitude"], "longitude": place["longitude"], "line": [list(p) for p in line]}


@pytest.fixture(scope="module")
def places_dir(tmp_path_factory, processor):
    """The tiny model directory of the fixtures, its bank given the places above."""
    directory = save_tiny_model(tmp_path_factory.mktemp("places"), seed=0)
    model = AddressCLIPModel.from_pretrained(directory)
    model.set_address_bank(model.address_bank, processor, places=PLACES)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def image():
    return Image.fromarray(np.random.default_rng(11).integers(0, 256, (40, 40, 3), dtype=np.uint8))


# ----------------------------------------------------------------------------- the bank and the config
def test_places_round_trip_through_save_and_load(places_dir):
    expected = [_as_saved(p) for p in PLACES]
    saved = json.loads((places_dir / "config.json").read_text())
    assert saved["address_bank"] == ADDRESSES and saved["address_places"] == expected
    reloaded = AddressCLIPModel.from_pretrained(places_dir)
    assert reloaded.address_places == expected
    values = [v for p in reloaded.address_places if p for v in (p["latitude"], p["longitude"], *sum(p["line"], []))]
    assert len(values) == 2 * 5 + 2 * 7 and all(type(v) is float for v in values)


def test_coordinates_are_rounded_to_7_decimals(model, processor):
    places = [None] * len(ADDRESSES)
    places[0] = {"latitude": np.float32(60.123456789), "longitude": 24.987654321, "line": [[60.111111111, 24.1]]}
    model.set_address_bank(ADDRESSES, processor, places=places)
    place = model.address_places[0]
    assert place["longitude"] == 24.9876543 and place["line"] == [[60.1111111, 24.1]]
    assert place["latitude"] == round(float(np.float32(60.123456789)), 7) and type(place["latitude"]) is float
    assert model.address_places[1:] == [None] * (len(ADDRESSES) - 1)


def test_a_bank_without_places_has_none_for_each_address_and_resetting_clears_them(model, processor, tmp_path):
    model.set_address_bank(ADDRESSES, processor, places=PLACES)
    assert model.address_places[0] is not None
    model.set_address_bank(ADDRESSES[:3], processor)  # a new bank without places clears the old ones
    assert model.address_places == [None, None, None] and model.config.address_places is None
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()).get("address_places") is None
    assert AddressCLIPModel.from_pretrained(tmp_path).address_places == [None, None, None]


def _with(index: int, **change) -> list:
    places = [dict(p) if p else None for p in PLACES]
    places[index] = {**(places[index] or {"latitude": 60.17, "longitude": 24.94}), **change}
    return places


@pytest.mark.parametrize(
    ("places", "message"),
    [
        (PLACES[:5], r"address_places has 5 entries but address_bank has 6 addresses"),
        (_with(2, latitude=91.0), r"address_places\[2\]: latitude must be a finite number in \[-90, 90\], got 91.0"),
        (_with(1, longitude=float("nan")), r"address_places\[1\]: longitude must be a finite number"),
        (_with(0, latitude="60.17"), r"address_places\[0\]: latitude must be a number, got str"),
        (_with(0, latitude=True), r"address_places\[0\]: latitude must be a number, got bool"),
        (_with(3, line=[[60.17, 200.0]]), r"address_places\[3\]\['line'\]\[0\]: longitude must be a finite number"),
        (_with(3, line=[[60.17, 24.9, 3.0]]), r"address_places\[3\]\['line'\]\[0\] must be a \[latitude, longitude\]"),
        (_with(4, line="60.17,24.9"), r"address_places\[4\]: line must be a list"),
        (_with(5, altitude=12.0), r"address_places\[5\] has unknown keys \['altitude'\]"),
        ([{"latitude": 60.1}] + PLACES[1:], r"address_places\[0\] lacks \['longitude'\]"),
        ([(60.1, 24.9)] + PLACES[1:], r"address_places\[0\] must be a dict"),
    ],
)
def test_bad_places_are_rejected_before_the_bank_changes(model, processor, places, message):
    model.set_address_bank(ADDRESSES[:2], processor)
    with pytest.raises(ValueError, match=message) as err:
        model.set_address_bank(ADDRESSES, processor, places=places)
    if "address_places[" in message:
        assert "(the place of address '" in str(err.value)  # the message also names the address
    assert model.address_bank == ADDRESSES[:2] and model.address_bank_embeds.shape[0] == 2


def test_the_config_validates_places_when_loaded(processor):
    good = tiny_config(processor, address_bank=ADDRESSES, address_places=[_as_saved(p) for p in PLACES])
    assert good.address_places[0]["line"][1] == [60.17, 24.9391]
    with pytest.raises(StrictDataclassClassValidationError, match=r"address_places has 1 entries"):
        tiny_config(processor, address_bank=ADDRESSES, address_places=[None])
    with pytest.raises(StrictDataclassClassValidationError, match=r"address_places\[0\]: latitude must be"):
        tiny_config(processor, address_bank=ADDRESSES[:1], address_places=[{"latitude": -95, "longitude": 0}])
    with pytest.raises(StrictDataclassClassValidationError, match="address_bank is not"):
        AddressCLIPConfig(address_places=[None])


# ----------------------------------------------------------------------------- the pipeline
def _where(result):
    return {row["address"]: (row["latitude"], row["longitude"]) for row in result}


def _points():
    return {a: (None, None) if p is None else (p["latitude"], p["longitude"]) for a, p in zip(ADDRESSES, PLACES)}


@pytest.mark.parametrize("remote", [False, True])
def test_pipeline_answers_carry_the_place_of_each_address(places_dir, image, remote):
    kwargs = {"trust_remote_code": True} if remote else {"pipeline_class": ImageAddressLocalizationPipeline}
    localizer = pipeline(TASK, model=str(places_dir), device="cpu", **kwargs)
    assert ("transformers_modules" in type(localizer).__module__) is remote  # the directory's copy of the pipeline
    result = localizer(image, top_k=len(ADDRESSES), min_score=0)
    assert _where(result) == _points()  # None for the address whose place is unknown
    assert all(type(row["latitude"]) is float for row in result if row["address"] != ADDRESSES[2])
    subset = localizer(image, candidate_addresses=[ADDRESSES[0], FREE_TEXT, ADDRESSES[2]], min_score=0)
    assert _where(subset) == {
        ADDRESSES[0]: _points()[ADDRESSES[0]],
        FREE_TEXT: (None, None),
        ADDRESSES[2]: (None, None),
    }


def test_pipeline_of_a_bank_without_places_answers_none(tmp_path, image):
    localizer = pipeline(TASK, model=str(save_tiny_model(tmp_path)), pipeline_class=ImageAddressLocalizationPipeline)
    result = localizer(image, top_k=3, min_score=0)
    assert len(result) == 3 and all(row["latitude"] is None and row["longitude"] is None for row in result)
