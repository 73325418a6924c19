"""Semantic address partition of OSM extracts (dataset_scripts/osm.py) and its reverse geocoder.

Synthetic .osm files are written around Helsinki (local metres -> lat/lon, ``fixtures.osm_writer``)
so each case is small and exact; the shipped extracts are parsed once per module.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString

from dataset_scripts.osm import (
    HELSINKI_PBF,
    HELSINKI_SHA256,
    KOTKA_PBF,
    KOTKA_SHA256,
    OSM_ATTRIBUTION,
    ReverseGeocoder,
    StreetPartition,
    SubStreet,
    main,
    partition_streets,
    read_extract,
    summary_lines,
    verify_extract,
)
from dataset_scripts.osm_partition import choose_crosses
from dataset_scripts.osm_read import extract_stem
from fixtures.osm_writer import HELSINKI, PITTSBURGH, SYDNEY, OsmFile, degrees_per_metre, street_grid
from modeling_addressclip.address import Address
from modeling_addressclip.geo import latlon_to_utm

LAT0, LON0 = HELSINKI
M_LAT, M_LON = degrees_per_metre(LAT0)


def run(osm: OsmFile, tmp_path: Path, **kwargs) -> StreetPartition:
    return partition_streets(osm.write(tmp_path / "city.osm"), **kwargs)


def texts(partition: StreetPartition) -> list[str]:
    return [s.address.format() for s in partition.sub_streets]


def check_invariants(partition: StreetPartition) -> None:
    for sub in partition.sub_streets:
        a = sub.address
        assert a.main_street not in a.cross_streets
        assert len(set(a.cross_streets)) == len(a.cross_streets)
        assert Address.parse(a.format()) == a
        assert sub.length_m == pytest.approx(sub.line.length)


def crossing_grid() -> OsmFile:
    osm = OsmFile()
    osm.street("Aleksanterinkatu", (-300, 0), (-150, 0), (0, 0), (150, 0), (300, 0), highway="secondary")
    for name, x in (("Bulevardi", -150), ("Citykatu", 0), ("Dagmarinkatu", 150)):
        osm.street(name, (x, -200), (x, 0), (x, 100), (x, 200))
    return osm


def test_cross_streets_cut_main_street_between_crossings(tmp_path):
    partition = run(crossing_grid(), tmp_path)
    found = texts(partition)
    assert "Aleksanterinkatu between Bulevardi and Citykatu, Testila" in found
    assert "Aleksanterinkatu between Citykatu and Dagmarinkatu, Testila" in found
    assert found.count("Aleksanterinkatu near Bulevardi, Testila") == 1  # the dead end beyond Bulevardi
    assert found.count("Citykatu near Aleksanterinkatu, Testila") == 2  # both arms of the cross
    piece = next(s for s in partition.sub_streets if s.address.cross_streets == ("Bulevardi", "Citykatu"))
    assert piece.length_m == pytest.approx(150, abs=3)
    assert piece.highway == "secondary" and piece.tags["highway"] == "secondary"
    assert partition.utm_zone == "35V" and partition.neighborhoods.keys() == {"Testila"}
    check_invariants(partition)


def test_t_junction_and_name_change_names_the_street_passing_through(tmp_path):
    osm = OsmFile()
    osm.street("Bulevardi", (0, -200), (0, 0), (0, 200), highway="primary")
    osm.street("Annankatu", (-200, 0), (-100, 0), (0, 0))  # becomes Eerikinkatu at Bulevardi
    osm.street("Eerikinkatu", (0, 0), (100, 0), (200, 0))
    osm.street("Fredrikinkatu", (-100, -150), (-100, 0))  # T-junction: ends at Annankatu
    found = texts(run(osm, tmp_path))
    assert "Annankatu between Bulevardi and Fredrikinkatu, Testila" in found
    assert "Eerikinkatu near Bulevardi, Testila" in found
    assert "Fredrikinkatu near Annankatu, Testila" in found
    assert not any("near Eerikinkatu" in t or "and Eerikinkatu" in t for t in found if t.startswith("Annankatu"))


def test_dual_carriageway_is_one_line_without_between_b_and_b(tmp_path):
    osm = OsmFile()
    xs = (-300, -100, 100, 300)
    osm.street("Mannerheimintie", *[(x, 0) for x in xs], highway="primary", oneway="yes", lanes="2")
    osm.street("Mannerheimintie", *[(x, 15) for x in reversed(xs)], highway="primary", oneway="yes", lanes="2")
    osm.street("Bulevardi", (-100, -150), (-100, 0), (-100, 15), (-100, 150))
    osm.street("Kalevankatu", (100, -150), (100, 0), (100, 15), (100, 150))
    partition = run(osm, tmp_path)
    main_pieces = [s for s in partition.sub_streets if s.address.main_street == "Mannerheimintie"]
    between = [s for s in main_pieces if len(s.address.cross_streets) == 2]
    assert [s.address.cross_streets for s in between] == [("Bulevardi", "Kalevankatu")]
    mid = between[0].line.interpolate(0.5, normalized=True)
    south = latlon_to_utm(LAT0, LON0, "35V")
    assert 3 < mid.y - south[1][0] < 12  # moved between the carriageways
    assert between[0].tags.get("carriageways") == "2"
    assert len(main_pieces) == 3  # near Bulevardi, between, near Kalevankatu: one line, not two
    assert not any(s.length_m < 20 for s in partition.sub_streets)  # no piece between the carriageways
    check_invariants(partition)


def test_wide_dual_carriageway_crossing_is_one_junction(tmp_path):
    osm = OsmFile()
    osm.street("Aleksanterinkatu", (-300, 0), (0, 0), (25, 0), (300, 0))
    osm.street("Unioninkatu", (0, -150), (0, 0), (0, 150), oneway="yes")
    osm.street("Unioninkatu", (25, 150), (25, 0), (25, -150), oneway="yes")
    found = texts(run(osm, tmp_path))
    assert not any("between Unioninkatu and Unioninkatu" in t for t in found)
    assert found.count("Aleksanterinkatu near Unioninkatu, Testila") == 2


def test_oblique_crossing_of_dual_carriageway_leaves_no_piece_inside_it(tmp_path):
    osm = OsmFile()
    osm.street("Aleksanterinkatu", (-300, -300), (0, 0), (24, 24), (300, 300))  # 34 m between the carriageways
    osm.street("Unioninkatu", (0, -150), (0, 0), (0, 150), oneway="yes")
    osm.street("Unioninkatu", (24, 150), (24, 24), (24, -150), oneway="yes")
    partition = run(osm, tmp_path)
    pieces = [s for s in partition.sub_streets if s.address.main_street == "Aleksanterinkatu"]
    assert len(pieces) == 2 and all(s.length_m > 380 for s in pieces)
    assert partition.dropped["inside-junction"] == 1


def test_bbox_cut_piece_is_dropped_and_counted(tmp_path):
    osm = crossing_grid()
    osm.street("Kaivokatu", (-150, 100), (0, 100), (150, 100))
    osm.way([(-150, 100), (-400, 100), (-1200, 100)], missing=(2,), highway="residential", name="Kaivokatu")
    osm.way([(150, 100), (1100, 100)], highway="residential", name="Kaivokatu")  # ends outside the bounds
    partition = run(osm, tmp_path)
    kaivokatu = [t for t in texts(partition) if t.startswith("Kaivokatu")]
    assert kaivokatu == [
        "Kaivokatu between Bulevardi and Citykatu, Testila",
        "Kaivokatu between Citykatu and Dagmarinkatu, Testila",
    ]
    assert partition.dropped["bbox-cut"] == 2


def test_short_stub_is_dropped(tmp_path):
    osm = OsmFile()
    osm.street("Aleksanterinkatu", (-215, 0), (-200, 0), (200, 0), (215, 0))
    osm.street("Bulevardi", (-200, -100), (-200, 0), (-200, 100))
    osm.street("Citykatu", (200, -100), (200, 0), (200, 100))
    partition = run(osm, tmp_path)
    assert [t for t in texts(partition) if t.startswith("Aleksanterinkatu")] == [
        "Aleksanterinkatu between Bulevardi and Citykatu, Testila"
    ]
    assert partition.dropped["too-short"] == 2
    assert run(osm, tmp_path, min_length_m=5.0).dropped.get("too-short", 0) == 0


def test_roundabout_is_one_junction(tmp_path):
    osm = OsmFile()
    ring = [(15 * math.cos(a * math.pi / 8), 15 * math.sin(a * math.pi / 8)) for a in range(16)]
    osm.way(ring + ring[:1], highway="primary", junction="roundabout")
    osm.street("Hakaniemenkatu", (-300, 0), (-150, 0), (-15, 0), highway="primary")
    osm.street("Hakaniemenkatu", ring[0], (300, 0), highway="primary")
    osm.street("Siltasaarenkatu", (0, 300), ring[4])
    osm.street("Siltasaarenkatu", ring[12], (0, -300))
    osm.street("Toinen linja", (-150, -200), (-150, 0), (-150, 200))
    partition = run(osm, tmp_path)
    found = texts(partition)
    assert "Hakaniemenkatu between Siltasaarenkatu and Toinen linja, Testila" in found
    assert found.count("Hakaniemenkatu near Siltasaarenkatu, Testila") == 1
    assert found.count("Siltasaarenkatu near Hakaniemenkatu, Testila") == 2
    assert all(s.length_m > 100 for s in partition.sub_streets if s.address.main_street != "Toinen linja")
    check_invariants(partition)


def test_unnamed_link_road_reveals_junction(tmp_path):
    osm = crossing_grid()
    osm.street("Pitkäsilta", (350, -100), (350, 0), (350, 200))  # touches nothing named ...
    osm.way([(300, 0), (350, 0)], highway="primary_link")  # ... but an unnamed link joins it
    found = texts(run(osm, tmp_path))
    assert "Aleksanterinkatu between Dagmarinkatu and Pitkäsilta, Testila" in found
    assert "Pitkäsilta near Aleksanterinkatu, Testila" in found


def test_tunnels_and_area_squares_make_no_junctions(tmp_path):
    osm = crossing_grid()
    osm.street("Keskustatunneli", (-50, -200), (-50, 0), (-50, 200), tunnel="yes")
    osm.street("Senaatintori", (50, 0), (100, 0), (100, 40), (50, 40), (50, 0), highway="pedestrian", area="yes")
    partition = run(osm, tmp_path)
    assert not any("Keskustatunneli" in t or "Senaatintori" in t for t in texts(partition))
    assert "Aleksanterinkatu between Bulevardi and Citykatu, Testila" in texts(partition)


def test_non_ascii_names_tram_and_neighborhoods(tmp_path):
    osm = OsmFile()
    osm.place("Töölö", -500, 0, kind="neighbourhood")
    osm.place("Kallio", 500, 0, kind="quarter")
    osm.street("Läntinen Ääkköskatu", (-400, 0), (-200, 0), (200, 0), (400, 0), highway="tertiary")
    osm.street("Öljytie", (-200, -100), (-200, 0), (-200, 100))
    osm.street("Åbogatan", (200, -100), (200, 0), (200, 100))
    osm.way([(-400, 4), (400, 4)], railway="tram")
    partition = run(osm, tmp_path)
    found = texts(partition)
    assert "Läntinen Ääkköskatu between Åbogatan and Öljytie, Testila" in found
    assert "Läntinen Ääkköskatu near Öljytie, Töölö" in found and "Läntinen Ääkköskatu near Åbogatan, Kallio" in found
    assert all(s.tags.get("tram") == "yes" for s in partition.sub_streets if s.address.main_street.startswith("L"))
    assert not any("tram" in s.tags for s in partition.sub_streets if not s.address.main_street.startswith("L"))
    custom = run(osm, tmp_path, neighborhood=lambda x, y: "Itä" if x > latlon_to_utm(LAT0, LON0)[0][0] else "Länsi")
    assert {s.address.neighborhood for s in custom.sub_streets} == {"Itä", "Länsi"}
    check_invariants(partition)


NAMES = st.sampled_from(["Aurakatu", "Bulevardi", "Öljytie", "Åbogatan", "Läntinen katu"])


@given(st.lists(NAMES, max_size=3, unique=True), st.lists(NAMES, max_size=3, unique=True))
def test_choose_crosses_never_repeats_a_name(start, end):
    chosen = choose_crosses(tuple(start), tuple(end))
    assert len(set(chosen)) == len(chosen) and len(chosen) <= 2
    assert bool(chosen) == bool(start or end)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(NAMES, st.integers(-250, 250), st.booleans()), min_size=1, max_size=6))
def test_random_grids_give_valid_addresses(tmp_path, streets):
    osm = OsmFile()
    osm.street("Keskuskatu", *[(x, 0) for x in range(-300, 301, 50)])
    for name, x, vertical in streets:
        points = [(x, y) for y in range(-300, 301, 50)] if vertical else [(-300, x), (0, x), (300, x)]
        osm.street(name, *points)
    check_invariants(run(osm, tmp_path))


def _sub(name: str, cross: str, coords) -> SubStreet:
    return SubStreet(Address(name, (cross,), "Testila"), LineString(coords), "residential", {})


def test_reverse_geocoder_nearest_too_far_and_ties():
    east, north, zone = latlon_to_utm(LAT0, LON0)
    x0, y0 = float(east[0]), float(north[0])
    subs = [
        _sub("Bkatu", "Xkatu", [(x0 - 100, y0 + 10), (x0 + 100, y0 + 10)]),
        _sub("Akatu", "Xkatu", [(x0 - 100, y0 - 10), (x0 + 100, y0 - 10)]),
        _sub("Ckatu", "Xkatu", [(x0 - 100, y0 + 40), (x0 + 100, y0 + 40)]),
    ]
    partition = StreetPartition(subs, zone, {"Testila": (x0, y0)}, (x0 - 500, y0 - 500, x0 + 500, y0 + 500), {})
    geocoder = ReverseGeocoder(partition, max_distance_m=50.0)
    tie = geocoder.from_utm(x0, y0)  # 10 m from Akatu and Bkatu: alphabetical address text wins
    assert tie.address.main_street == "Akatu" and tie.distance_m == pytest.approx(10)
    assert geocoder.from_utm(x0 + 30, y0 + 35).address.main_street == "Ckatu"
    assert geocoder(LAT0 + 8 * M_LAT, LON0).address.main_street == "Bkatu"
    far = geocoder.from_utm(x0, y0 - 83.25)
    assert far.address is None and far.distance_m == pytest.approx(73.25)
    assert far.message == "no street within 50 m (nearest: 73.2 m)"
    assert ReverseGeocoder(partition, max_distance_m=100).from_utm(x0, y0 - 83.25).address.main_street == "Akatu"


# ---- the shipped extract ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def helsinki() -> StreetPartition:
    return partition_streets(read_extract(HELSINKI_PBF, HELSINKI_SHA256))


def test_shipped_extract_has_enough_addresses(helsinki):
    long_addresses = {s.address for s in helsinki.sub_streets if s.length_m >= 50}
    assert len(long_addresses) >= 100
    assert helsinki.utm_zone == "35V"
    assert len(helsinki.neighborhoods) >= 4
    assert helsinki.dropped.get("bbox-cut", 0) > 0
    assert any(s.tags.get("tram") == "yes" for s in helsinki.sub_streets)
    assert any("ä" in s.address.format() or "ö" in s.address.format() for s in helsinki.sub_streets)
    check_invariants(helsinki)
    minx, miny, maxx, maxy = helsinki.bounds
    coords = [xy for s in helsinki.sub_streets for xy in s.line.coords]
    assert all(minx - 1 <= x <= maxx + 1 and miny - 1 <= y <= maxy + 1 for x, y in coords)


def test_shipped_extract_geocodes_its_own_streets(helsinki):
    geocoder = ReverseGeocoder(helsinki)
    for sub in helsinki.sub_streets[::10]:
        middle = sub.line.interpolate(0.5, normalized=True)
        result = geocoder.from_utm(middle.x, middle.y)
        assert result.distance_m < 1e-6 and result.address is not None


@pytest.mark.parametrize(("path", "sha256"), [(HELSINKI_PBF, HELSINKI_SHA256), (KOTKA_PBF, KOTKA_SHA256)])
def test_shipped_extract_checksum_and_notice(path, sha256):
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    assert verify_extract(path, sha256) == path
    notice = (path.parent / "NOTICE").read_text(encoding="utf-8")
    assert OSM_ATTRIBUTION in notice
    assert f"{path.name}:" in notice and f"sha256 {sha256}" in notice and f"{path.stat().st_size:,} bytes" in notice


def test_second_shipped_extract_kotka_has_its_own_zone_neighbourhoods_and_city():
    extract = read_extract(KOTKA_PBF)  # checksummed: a shipped file
    assert extract.city == "Kotka"
    partition = partition_streets(extract)
    assert partition.utm_zone == "35V" and partition.city == "Kotka"
    assert set(partition.neighborhoods) == {"Helilä", "Malminki", "Marttila", "Ristinkallio", "Suurniitty"}
    assert "Kannikko" not in partition.neighborhoods  # a hamlet: only used when no suburb/neighbourhood exists
    assert {s.address.neighborhood for s in partition.sub_streets} <= set(partition.neighborhoods)
    assert len({s.address for s in partition.sub_streets if s.length_m >= 50}) >= 100
    lat, lon = (60.52, 60.54), (26.93, 26.97)
    east, north, _ = latlon_to_utm([lat[0], lat[1]], [lon[0], lon[1]], "35V")
    minx, miny, maxx, maxy = partition.bounds
    assert minx == pytest.approx(min(east), abs=300) and maxy == pytest.approx(max(north), abs=300)
    check_invariants(partition)
    lines = summary_lines(partition)
    assert "city: Kotka" in lines and any("from place=suburb|neighbourhood|quarter nodes" in x for x in lines)


def test_swapped_shipped_extract_fails_its_checksum(tmp_path, monkeypatch):
    import dataset_scripts.osm as osm

    copy = tmp_path / "kotka.osm.pbf"
    shutil.copy(HELSINKI_PBF, copy)
    monkeypatch.setitem(osm.SHIPPED_EXTRACTS, copy.resolve(), KOTKA_SHA256)  # as if Helsinki's bytes were shipped
    with pytest.raises(ValueError, match="kotka.osm.pbf has sha256 " + HELSINKI_SHA256):
        read_extract(copy)


def test_corrupted_and_swapped_extracts_fail_clearly(tmp_path):
    truncated = tmp_path / "helsinki.osm.pbf"
    truncated.write_bytes(HELSINKI_PBF.read_bytes()[:300_000])
    with pytest.raises(ValueError, match="helsinki.osm.pbf.*sha256"):
        read_extract(truncated, HELSINKI_SHA256)
    with pytest.raises(ValueError, match="helsinki.osm.pbf.*not a readable OSM file"):
        read_extract(truncated)
    swapped = tmp_path / "swapped.osm.pbf"
    shutil.copy(crossing_grid().write(tmp_path / "other.osm"), swapped)
    with pytest.raises(ValueError, match="swapped.osm.pbf.*expected " + HELSINKI_SHA256):
        partition_streets(read_extract(swapped, HELSINKI_SHA256))
    garbage = tmp_path / "garbage.osm.pbf"
    garbage.write_bytes(b"\x00\x00\x00\x0eOSMHeader" + bytes(range(256)))
    with pytest.raises(ValueError, match="garbage.osm.pbf"):
        verify_extract(garbage)
    with pytest.raises(ValueError, match="missing.osm.pbf"):
        verify_extract(tmp_path / "missing.osm.pbf")
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["garbage.osm.pbf", "helsinki.osm.pbf", "other.osm", "swapped.osm.pbf"]  # nothing else


# ---- any extract: formats, zones, city names, neighborhood fallback ----------------------------


@pytest.mark.parametrize("suffix", [".osm", ".osm.bz2", ".osm.gz"])
def test_compressed_xml_extracts_give_the_same_partition(tmp_path, suffix):
    path = crossing_grid().write(tmp_path / f"city{suffix}")
    assert path.read_bytes()[:3] == {".osm": b"<?x", ".osm.bz2": b"BZh", ".osm.gz": b"\x1f\x8b\x08"}[suffix]
    assert texts(partition_streets(path)) == texts(run(crossing_grid(), tmp_path))


@pytest.mark.parametrize(("origin", "zone"), [(PITTSBURGH, "17T"), (SYDNEY, "56H"), (HELSINKI, "35V")])
def test_utm_zone_comes_from_the_extract(tmp_path, origin, zone):
    partition = partition_streets(street_grid(OsmFile(origin=origin)).write(tmp_path / "grid.osm.bz2"))
    assert partition.utm_zone == zone
    lat, lon = origin
    east, north, _ = latlon_to_utm(lat, lon, zone)
    centre = [
        s.line for s in partition.sub_streets if s.address.format() == "Avenue B between Street 2 and Street 3, Testila"
    ]
    assert len(centre) == 1  # the grid's middle block, centred on the origin
    middle = centre[0].interpolate(0.5, normalized=True)
    assert math.hypot(middle.x - east[0], middle.y - north[0]) < 1.0
    assert len(partition.sub_streets) == 3 * 5 + 4 * 4  # avenues: 3 blocks + 2 ends; streets: 2 blocks + 2 ends
    check_invariants(partition)


def test_city_name_is_the_most_common_addr_city_else_the_largest_city_or_town(tmp_path):
    osm = street_grid(OsmFile(place=None))
    osm.place("Smallville", 300, 0, kind="town", population="900")
    osm.place("Bigtown", -300, 0, kind="town", population="12 000")
    osm.place("Hamletby", 0, 300, kind="hamlet")
    assert read_extract(osm.write(tmp_path / "a.osm")).city == "Bigtown"
    osm.place("Capital", 0, -300, kind="city")
    assert read_extract(osm.write(tmp_path / "b.osm")).city == "Capital"  # a city before any town
    osm.way([(0, 0), (5, 0), (5, 5), (0, 0)], building="yes", addr__city="Kotka")
    osm.way([(50, 50), (55, 50), (55, 55), (50, 50)], building="yes", addr__city="Kotka")
    osm.way([(90, 50), (95, 50), (95, 55), (90, 50)], building="yes", addr__city="Hamina")
    assert read_extract(osm.write(tmp_path / "c.osm")).city == "Kotka"
    assert read_extract(street_grid(OsmFile(place=None)).write(tmp_path / "d.osm")).city is None
    assert [extract_stem(n) for n in ("kotka.osm.pbf", "new_york.osm.bz2", "San-Diego.osm", "x.opl")] == [
        "Kotka", "New York", "San Diego", "X",
    ]  # fmt: skip


def test_neighborhood_fallback_chain(tmp_path):
    """suburb|neighbourhood|quarter nodes, else city|town|village|hamlet nodes, else one named after the city."""
    with_village = street_grid(OsmFile(place=None))
    with_village.place("Kylä", 0, 0, kind="village")
    with_village.place("Toinen", 2000, 0, kind="hamlet")  # outside the grid: never the nearest
    partition = partition_streets(with_village.write(tmp_path / "village.osm"))
    assert {s.address.neighborhood for s in partition.sub_streets} == {"Kylä"}
    assert "city|town|village|hamlet" in partition.neighborhood_source
    with_village.place("Keskusta", 0, 0, kind="suburb")
    partition = partition_streets(with_village.write(tmp_path / "suburb.osm"))
    assert {s.address.neighborhood for s in partition.sub_streets} == {"Keskusta"}
    bare = street_grid(OsmFile(place=None))
    path = bare.write(tmp_path / "lonely_town.osm")
    for kwargs, expected in (({}, "Lonely Town"), ({"default_neighborhood": "Nowhere"}, "Nowhere")):
        partition = partition_streets(path, **kwargs)
        assert {s.address.neighborhood for s in partition.sub_streets} == {expected}
        assert list(partition.neighborhoods) == [expected] and "no place nodes" in partition.neighborhood_source
        minx, miny, maxx, maxy = partition.bounds
        assert partition.neighborhoods[expected] == pytest.approx(((minx + maxx) / 2, (miny + maxy) / 2))
    bare.way([(0, 0), (5, 0), (5, 5), (0, 0)], building="yes", addr__city="Hamina")
    partition = partition_streets(bare.write(tmp_path / "lonely_town.osm"))
    assert {s.address.neighborhood for s in partition.sub_streets} == {"Hamina"} and partition.city == "Hamina"


def test_cli_summary(tmp_path, capsys):
    main(["--pbf", str(crossing_grid().write(tmp_path / "city.osm")), "--summary"])
    out = capsys.readouterr().out
    assert "street names: 4" in out and "sub-streets:" in out and "median sub-street length" in out
    assert OSM_ATTRIBUTION in out and "between" not in out
