"""A demo city from any OpenStreetMap extract: the shipped Kotka one, synthetic XML ones (bz2, another
UTM zone and hemisphere, no place nodes), too few streets, and one cache entry per extract."""

from __future__ import annotations

import re
import subprocess
import sys

import datasets
import pytest

from addressclip_train import cli
from dataset_scripts import osm
from dataset_scripts.demo_city import build_demo_city, cache_name, default_cache_dir, load_demo_city, main
from dataset_scripts.schema import SPLITS, validate_row
from fixtures import ROOT
from fixtures.osm_writer import SYDNEY, OsmFile, street_grid

KOTKA_NEIGHBOURHOODS = {"Helilä", "Malminki", "Marttila", "Ristinkallio", "Suurniitty"}
TINY = dict(max_addresses=6, image_size=32, workers=1)


def load(directory) -> datasets.DatasetDict:
    return datasets.load_dataset(str(directory), download_mode="force_redownload")


def check_splits(loaded: datasets.DatasetDict, zone: str, prefix: str) -> None:
    """Every row valid, in ``zone``, with ``prefix-`` location ids; the paper's splits by location."""
    assert list(loaded) == list(SPLITS) and all(len(loaded[s]) > 0 for s in SPLITS)
    for split in SPLITS:
        rows = loaded[split].cast_column("image", datasets.Image(decode=False))
        for index, row in enumerate(rows):
            validate_row(row, f"{split} row {index}")
        assert set(rows["utm_zone"]) == {zone}
        assert all(location.startswith(f"{prefix}-") for location in rows["location_id"])
    locations = {s: set(loaded[s]["location_id"]) for s in SPLITS}
    assert not (locations["train"] & locations["database"] or locations["train"] & locations["query"])
    assert not locations["database"] & locations["query"]
    train = set(loaded["train"]["address"])
    assert set(loaded["database"]["address"]) <= train and set(loaded["query"]["address"]) <= train


def too_few_streets(tmp_path):
    """Two crossing streets: four 100 m sub-streets, two addresses ("Isokatu near Poikkikatu" on both arms)."""
    city = OsmFile()
    city.street("Isokatu", (-100, 0), (0, 0), (100, 0))
    city.street("Poikkikatu", (0, -100), (0, 0), (0, 100))
    return city.write(tmp_path / "tiny.osm")


@pytest.fixture(scope="module")
def kotka(tmp_path_factory):
    lines: list[str] = []
    report = build_demo_city(tmp_path_factory.mktemp("kotka") / "city", pbf=osm.KOTKA_PBF, log=lines.append, **TINY)
    report.extra["log"] = lines
    return report


def test_kotka_demo_city_has_its_zone_names_splits_and_attribution(kotka):
    loaded = load(kotka.output)
    check_splits(loaded, "35V", "kot")
    rows = [row for split in SPLITS for row in loaded[split].remove_columns("image")]
    assert len({row["address"] for row in rows}) == 6 and kotka.city == "Kotka"
    assert {row["neighborhood"] for row in rows} <= KOTKA_NEIGHBOURHOODS
    assert all(60.52 <= row["latitude"] <= 60.54 and 26.93 <= row["longitude"] <= 26.97 for row in rows)
    card = (kotka.output / "README.md").read_text(encoding="utf-8")
    assert "license: odbl" in card and osm.OSM_ATTRIBUTION in card
    assert "pretty_name: AddressCLIP demo city (Kotka)" in card and "# AddressCLIP demo city: Kotka" in card
    assert f"`kotka.osm.pbf` (sha256 `{osm.KOTKA_SHA256}`)" in card and "Helsinki" not in card
    assert "Neighborhoods: " + ", ".join(sorted(KOTKA_NEIGHBOURHOODS)) in card
    log = "\n".join(kotka.extra["log"])  # the partition statistics, before rendering
    assert "demo city Kotka from kotka.osm.pbf" in log and "UTM zone 35V" in log
    assert re.search(r"sub-streets: \d{3} \(\d{3} >= 50 m\)", log) and "parse + partition time" in log
    assert kotka.partition_seconds > 0 and kotka.seconds >= kotka.partition_seconds + kotka.render_seconds


def test_bz2_extract_in_another_zone_and_hemisphere_through_the_cli(tmp_path, capsys):
    path = street_grid(OsmFile(origin=SYDNEY, place="Surry Hills")).write(tmp_path / "sydney.osm.bz2")
    assert path.read_bytes()[:3] == b"BZh"
    out, figures = tmp_path / "sydney", (tmp_path / "map.png", tmp_path / "views.png")
    main(["--pbf", str(path), "--output", str(out), "--max-addresses", "6", "--image-size", "32",
          "--plot-map", str(figures[0]), "--plot-samples", str(figures[1])])  # fmt: skip
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)
    printed = capsys.readouterr().out
    expected = ["demo city Sydney from sydney.osm.bz2", "UTM zone 56H", "sub-streets: 31 (31 >= 50 m)",
                "neighborhoods: Surry Hills", "parse + partition time", "query:", "build ", f"wrote {out}"]  # fmt: skip
    assert [line for line in expected if line not in printed] == []
    loaded = load(out)
    check_splits(loaded, "56H", "syd")
    assert all(-33.88 < lat < -33.86 for lat in loaded["train"]["latitude"])
    assert set(loaded["query"]["neighborhood"]) == {"Surry Hills"}
    assert "# AddressCLIP demo city: Sydney" in (out / "README.md").read_text(encoding="utf-8")


def test_extract_without_place_nodes_is_one_neighborhood_named_after_the_city(tmp_path):
    path = street_grid(OsmFile(place=None)).write(tmp_path / "lonely_town.osm")
    for name, expected in ((None, "Lonely Town"), ("Pikkukylä", "Pikkukylä")):
        report = build_demo_city(tmp_path / f"city-{expected}", pbf=path, name=name, **TINY)
        loaded = load(report.output)
        check_splits(loaded, "35V", "lon" if name is None else "pik")
        assert {n for s in SPLITS for n in loaded[s]["neighborhood"]} == {expected}
        card = (report.output / "README.md").read_text(encoding="utf-8")
        assert f"# AddressCLIP demo city: {expected}" in card
        assert f"Neighborhoods: {expected}, from one neighborhood for the whole extract (no place nodes)" in card
        assert "one without any place node is one neighborhood" in card  # the fallback chain, documented


def test_too_few_streets_fail_before_anything_is_written(tmp_path):
    path = too_few_streets(tmp_path)
    message = r"tiny\.osm: 4 sub-streets >= 50 m, 2 addresses; a demo city needs at least 5 addresses"
    with pytest.raises(ValueError, match=message):
        build_demo_city(tmp_path / "out", pbf=path, **TINY)
    # five 52 m camera stretches of one address: 4/1/0 train/database/query locations, no query
    short_blocks = street_grid(OsmFile(), block_m=52.0).write(tmp_path / "blocks.osm")
    with pytest.raises(ValueError, match=r"blocks\.osm: 5 camera positions of 1 addresses split into 4 train/1 "
                       r"database/0 query locations .* at least one location in each split"):  # fmt: skip
        build_demo_city(tmp_path / "out", pbf=short_blocks, max_addresses=1, image_size=32, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocks.osm", "tiny.osm"]


def test_too_few_streets_is_one_line_from_both_commands(tmp_path):
    path = too_few_streets(tmp_path)
    argv = ["--pbf", str(path), "--output", str(tmp_path / "out")]
    for run in (main, lambda args: cli.main(["build-demo", *args])):
        with pytest.raises(SystemExit) as exited:
            run(argv)
        assert str(exited.value.code).startswith("demo_city: ") and "\n" not in str(exited.value.code)
        assert "4 sub-streets >= 50 m, 2 addresses" in str(exited.value.code)
    proc = subprocess.run([sys.executable, "-m", "dataset_scripts.demo_city", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("demo_city: ") and "2 addresses" in proc.stderr
    with pytest.raises(SystemExit, match=f"demo_city: OSM extract .*kotka.osm.pbf has sha256 {osm.KOTKA_SHA256}"):
        main(["--pbf", str(osm.KOTKA_PBF), "--sha256", "0" * 64, "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_each_extract_has_its_own_cache_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("ADDRESSCLIP_CACHE", str(tmp_path / "cache"))
    helsinki, kotka = default_cache_dir(0, 32, 6), default_cache_dir(0, 32, 6, pbf=osm.KOTKA_PBF)
    assert helsinki.name == "demo_city-4-0-32-6addr" == default_cache_dir(0, 32, 6, pbf=osm.HELSINKI_PBF).name
    assert kotka.name == f"demo_city-kotka-{osm.KOTKA_SHA256[:12]}-4-0-32-6addr"
    assert default_cache_dir(0, 32, 6, pbf=osm.KOTKA_PBF, name="Karhula") not in (kotka, helsinki)
    first, second = (tmp_path / "a", tmp_path / "b")
    for folder, place in ((first, "Keskusta"), (second, "Satama")):  # same file name, other bytes
        folder.mkdir()
        street_grid(OsmFile(place=place)).write(folder / "town.osm")
    assert cache_name(0, 32, 6, first / "town.osm") != cache_name(0, 32, 6, second / "town.osm")
    loaded = load_demo_city(seed=0, image_size=32, max_addresses=6, pbf=osm.KOTKA_PBF)
    assert (kotka / "README.md").is_file() and not helsinki.exists()
    assert all(location.startswith("kot-") for location in loaded["train"]["location_id"])
    built = (kotka / "README.md").stat().st_mtime_ns
    again = load_demo_city(seed=0, image_size=32, max_addresses=6, pbf=osm.KOTKA_PBF)  # reused, not rebuilt
    assert again["train"]["location_id"] == loaded["train"]["location_id"]
    assert (kotka / "README.md").stat().st_mtime_ns == built
    assert sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")) == [kotka.name]
