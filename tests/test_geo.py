"""lat/lon <-> UTM with pyproj: the zone comes from the data, points round-trip."""

import numpy as np
import pytest

from modeling_addressclip.geo import latlon_to_utm, parse_utm_zone, utm_to_latlon, utm_zone_for


@pytest.mark.parametrize(
    ("lat", "lon", "zone"),
    [
        (40.4433, -79.9436, "17T"),
        (37.7749, -122.4194, "10S"),
        (60.1699, 24.9384, "35V"),
        (-33.86, 151.21, "56H"),
        (60.39, 5.32, "32V"),
    ],
)
def test_zone_of_known_cities(lat, lon, zone):
    assert utm_zone_for(lat, lon) == zone


def test_round_trip_and_known_projection():
    lat = np.array([40.4433, 40.4401, 40.4512])
    lon = np.array([-79.9436, -79.9502, -79.9301])
    east, north, zone = latlon_to_utm(lat, lon)
    assert zone == "17T"
    assert east[0] == pytest.approx(589589.0, abs=1.0) and north[0] == pytest.approx(4477496.9, abs=1.0)
    back_lat, back_lon = utm_to_latlon(east, north, zone)
    np.testing.assert_allclose(back_lat, lat, atol=1e-9)
    np.testing.assert_allclose(back_lon, lon, atol=1e-9)


def test_zone_can_be_overridden_for_a_whole_dataset():
    east, _, zone = latlon_to_utm([60.17], [24.0], zone="35V")
    assert zone == "35V" and east[0] < 500_000  # west of zone 35's central meridian (27 E)


@pytest.mark.parametrize("bad", ["17", "0T", "61N", "17I", "T17", ""])
def test_bad_zone_raises(bad):
    with pytest.raises(ValueError, match="UTM zone"):
        parse_utm_zone(bad)


def test_non_finite_coordinates_raise_with_index():
    with pytest.raises(ValueError, match="latitude has a non-finite value at index 1"):
        latlon_to_utm([40.0, float("nan")], [-79.0, -79.0])
    with pytest.raises(ValueError, match="shapes differ"):
        latlon_to_utm([40.0, 41.0], [-79.0])
