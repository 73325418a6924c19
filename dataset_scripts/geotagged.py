"""An IAL dataset from any folder of geotagged photos (or a table of their positions) and an OSM extract.

    python -m dataset_scripts.geotagged --pbf CITY.osm.pbf --photos DIR --output OUT
    python -m dataset_scripts.geotagged --pbf CITY.osm.pbf --table photos.csv --output OUT

``--photos``: every image file below DIR, its position from EXIF GPS. ``--table``: a CSV with
``image,latitude,longitude`` and optionally ``heading,caption,location_id``, image paths relative to
the CSV's folder; a malformed table fails naming the file, row and field (``geotagged_read``).

Each photo gets the address of its nearest sub-street in the extract's semantic address partition
(paper §3, ``osm.ReverseGeocoder``) within ``--max-distance``, default 30 m: consumer GPS errs by
5-10 m (~20 m between tall buildings) and a photo is taken up to ~15 m from a wide street's centre
line, while a photo 200 m from every street is in a park, a courtyard or the sea. A location is a
photo and every not yet grouped photo on the same address within ``--location-radius`` (default
5 m, the spread of repeated fixes at one spot; the demo city's cameras are 10 m apart), so it spans
at most twice the radius; a table's ``location_id`` wins. The 7:2:1 split by location (§5.1) and the
writing (parquet shards, card, report, refusing an empty or mostly rejected build) are
``ial_builder.build_ial``'s. A photo without GPS, with malformed GPS, outside the extract's bounds,
farther than ``--max-distance`` from every sub-street or unreadable is reported with its reason,
never guessed. Captions stay empty unless the table gives them (``dataset_scripts.captions``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely

from dataset_scripts.geotagged_read import IMAGE_SUFFIXES, Photo, photos_from_folder, photos_from_table
from dataset_scripts.ial_builder import BuildOptions, DatasetInfo, add_common_arguments, build_ial, run_cli
from dataset_scripts.ial_io import Annotation, ImageKeys, Reject
from dataset_scripts.ial_places import Place
from dataset_scripts.ial_report import BuildReport
from dataset_scripts.osm import OSM_ATTRIBUTION, ReverseGeocoder, StreetPartition, extract_path, partition_streets
from modeling_addressclip.address import Address
from modeling_addressclip.geo import latlon_to_utm

__all__ = [
    "DEFAULT_LOCATION_RADIUS_M", "DEFAULT_MAX_DISTANCE_M", "build_geotagged", "group_locations",
    "photo_annotations", "photo_locator",
]  # fmt: skip

DEFAULT_MAX_DISTANCE_M = 30.0
DEFAULT_LOCATION_RADIUS_M = 5.0
HEADING_NOTES = {
    "heading_magnetic": "GPSImgDirectionRef M (magnetic north differs from true north by the declination)",
    "heading_unreferenced": "no GPSImgDirectionRef",
    "heading_invalid": "GPSImgDirection not an angle in [0, 360]",
}
# build_ial parses every row's address before asking the locator where it was taken: a photo the
# locator rejects carries this text, which is never written.
UNLOCATED = Address("unlocated photo", ("no street",), "nowhere").format()


# --------------------------------------------------------------------------- addresses and locations


@dataclass(frozen=True)
class _Located:
    east: float
    north: float
    address: str


def _locate(photo: Photo, partition: StreetPartition, geocoder: ReverseGeocoder, extract: str) -> _Located:
    """The UTM point and nearest sub-street address of a photo's position; ``Reject`` if there is none."""
    where = f"{photo.key!r} at ({photo.latitude:.6f}, {photo.longitude:.6f})"
    east, north, _ = latlon_to_utm(photo.latitude, photo.longitude, partition.utm_zone)
    east, north = float(east[0]), float(north[0])
    min_east, min_north, max_east, max_north = partition.bounds
    inside = math.isfinite(east) and math.isfinite(north)
    if not (inside and min_east <= east <= max_east and min_north <= north <= max_north):
        raise Reject("outside_extract", f"{where} is outside the bounds of {extract}")
    result = geocoder.from_utm(east, north)
    if result.address is None:
        raise Reject("no_street_nearby", f"{where}: {result.message}")
    return _Located(east, north, result.address.format())


def group_locations(points: np.ndarray, addresses: Sequence[str], keys: Sequence[str], radius_m: float) -> list[str]:
    """The location id of each photo (``points``: UTM east/north rows, in the photos' order).

    A location is a photo and every photo not yet grouped within ``radius_m`` of it on the same address
    (photos taken in order), so photos at the same coordinates always share one and a location spans at
    most ``2 * radius_m``; its id is its first photo's key. One STRtree query finds all neighbours.
    """
    ids: list[str | None] = [None] * len(keys)
    if not ids:
        return []
    geometry = shapely.points(np.asarray(points, dtype=np.float64).reshape(-1, 2))
    source, target = shapely.STRtree(geometry).query(geometry, predicate="dwithin", distance=radius_m)
    order = np.lexsort((target, source))
    source, target = source[order], target[order]
    starts = np.searchsorted(source, np.arange(len(keys) + 1))
    for first in range(len(keys)):
        if ids[first] is None:
            for other in target[starts[first] : starts[first + 1]]:
                if ids[other] is None and addresses[other] == addresses[first]:
                    ids[other] = keys[first]
    return ids  # type: ignore[return-value]  # every photo is within 0 m of itself


def photo_annotations(
    photos: Sequence[Photo], partition: StreetPartition, max_distance_m: float, radius_m: float, extract: str
) -> list[Annotation]:
    """One ``Annotation`` per photo for ``build_ial`` with ``photo_locator``: its address and ``Place``, or the
    reason it has none (``extract`` names the extract in messages)."""
    geocoder = ReverseGeocoder(partition, max_distance_m)
    outcomes: list[_Located | Reject] = []
    for photo in photos:
        try:
            if photo.reject is not None:
                raise Reject(*photo.reject)
            outcomes.append(_locate(photo, partition, geocoder, extract))
        except Reject as reject:
            outcomes.append(reject)
    free = [i for i, o in enumerate(outcomes) if isinstance(o, _Located) and photos[i].location_id is None]
    points = np.array([(outcomes[i].east, outcomes[i].north) for i in free])
    grouped = group_locations(points, [outcomes[i].address for i in free], [photos[i].key for i in free], radius_m)
    locations = dict(zip(free, grouped))
    annotations = []
    for index, (photo, outcome) in enumerate(zip(photos, outcomes)):
        if isinstance(outcome, Reject):
            fields, address = {"reject": (outcome.reason, outcome.detail)}, UNLOCATED
        else:
            location = photo.location_id or locations[index]
            place = Place(outcome.east, outcome.north, partition.utm_zone, location, photo.heading)
            fields, address = {"place": place, "heading_note": photo.heading_note}, outcome.address
        annotations.append(Annotation(photo.key, None, address, photo.caption, photo.source, fields))
    return annotations


def photo_locator(annotation: Annotation) -> Place:
    """The ``Place`` that ``photo_annotations`` found for a photo; ``Reject`` with the reason it found none."""
    if "reject" in annotation.fields:
        raise Reject(*annotation.fields["reject"])
    return annotation.fields["place"]


# --------------------------------------------------------------------------- the dataset


def _description(name: str, source: str, extract: str, license: str, settings: Mapping[str, float],
                 annotations: Sequence[Annotation], others: Sequence[str]) -> str:  # fmt: skip
    """The card text above ``build_ial``'s statistics and validation sections."""
    placed = [a.fields for a in annotations if "place" in a.fields]
    notes = Counter(f["heading_note"] for f in placed if f["heading_note"])
    headings = sum(math.isfinite(f["place"].heading) for f in placed)
    unknown = ", ".join(f"{n} with {HEADING_NOTES[note]}" for note, n in sorted(notes.items())) or "none"
    skipped = f"\n- {len(others)} file(s) without an image suffix were not read (e.g. `{others[0]}`)." if others else ""
    return f"""# {name}

Image address localization (IAL) dataset of geotagged photos (AddressCLIP, Xu et al., ECCV 2024), built by
`python -m dataset_scripts.geotagged` from {source} and the OpenStreetMap extract `{extract}`.

## Source and license notes
- Photos: the photographers'; this card's license (`{license}`, set with `--license`) is the one their owner
  gave them. Do not publish this directory without the right to publish the photos.
- Addresses: derived from OpenStreetMap data of `{extract}`, {OSM_ATTRIBUTION}. The address annotations
  (main street, cross streets, neighborhood) are under the ODbL (`odbl`).

## How it was built
- Address: the nearest sub-street of the extract's semantic address partition (paper §3), if it is
  within {settings["max_distance_m"]:g} m (`--max-distance`) of the photo's position; positions outside the
  extract's bounds or farther from every sub-street are reported, never guessed.
- Locations: a photo and every not yet grouped photo on the same address within {settings["radius_m"]:g} m
  (`--location-radius`) are one location (a table's `location_id` wins); splits 7:2:1 by location.
- Headings: from the table or `GPSImgDirection` with reference T (true north): {headings} photo(s) have one.
  Directions stored as unknown (NaN): {unknown}.
- Captions: empty unless the table gives them. Fill them with
  `python -m dataset_scripts.captions --model Salesforce/blip-image-captioning-large --photos PHOTOS --output
  captions.jsonl` (the photo folder or table of this build) and rebuild with `--captions captions.jsonl`.{skipped}
"""


def build_geotagged(
    output: str | os.PathLike,
    pbf: str | os.PathLike,
    *,
    photos: str | os.PathLike | None = None,
    table: str | os.PathLike | None = None,
    max_distance_m: float = DEFAULT_MAX_DISTANCE_M,
    location_radius_m: float = DEFAULT_LOCATION_RADIUS_M,
    name: str = "Geotagged photos",
    license: str = "other",
    options: BuildOptions | None = None,
) -> BuildReport:
    """Build the IAL dataset of the photos below ``photos`` (EXIF GPS) or listed in ``table`` at ``output``.

    Returns ``build_ial``'s report; ``BuildError`` and nothing at ``output`` if a split got no rows or
    too many photos were rejected; ``ValueError``/``FileNotFoundError`` for unusable inputs.
    """
    if (photos is None) == (table is None):
        raise ValueError("give either a photo folder or a photo table")
    if not (max_distance_m > 0 and location_radius_m >= 0):
        raise ValueError(f"--max-distance must be > 0 and --location-radius >= 0, got {max_distance_m}, "
                         f"{location_radius_m}")  # fmt: skip
    options = options or BuildOptions()
    if photos is not None:
        folder = Path(photos)
        if not folder.is_dir():
            raise FileNotFoundError(f"--photos {folder} is not a directory")
        read, others = photos_from_folder(folder, options.progress)
        if not read:
            raise ValueError(f"--photos {folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
        images, source = ImageKeys.under(folder, "--photos"), f"the photo folder `{folder.name}/` (EXIF GPS)"
    else:
        table = Path(table)
        if not table.is_file():
            raise FileNotFoundError(f"--table {table} does not exist")
        read, others = photos_from_table(table), []
        images, source = ImageKeys.under(table.parent, "the table's folder"), f"the photo table `{table.name}`"
    partition = partition_streets(pbf)
    if not partition.sub_streets:
        raise ValueError(f"the OSM extract {pbf} has no sub-streets (named streets with junctions) to give addresses")
    extract = Path(pbf).name
    annotations = photo_annotations(read, partition, max_distance_m, location_radius_m, extract)
    settings = {"max_distance_m": max_distance_m, "radius_m": location_radius_m}
    description = _description(name, source, extract, license, settings, annotations, others)
    info = DatasetInfo(name, partition.utm_zone, description, license,
                       ("image-address-localization", "openstreetmap", "geotagged-photos"))  # fmt: skip
    return build_ial(output, lambda: iter(annotations), images, photo_locator, info, options)


def main(argv: list[str] | None = None) -> int:
    """Build an IAL dataset from geotagged photos and an OSM extract."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pbf", required=True, type=extract_path, help="OSM extract covering the photos (.osm.pbf, .osm, .osm.bz2)"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--photos", help="folder of photos with EXIF GPS (read recursively)")
    source.add_argument(
        "--table", help="CSV: image,latitude,longitude[,heading,caption,location_id]; images relative to its folder"
    )
    parser.add_argument("--max-distance", type=float, default=DEFAULT_MAX_DISTANCE_M, metavar="M",
                        help="farthest a photo may be from its sub-street (default 30 m)")  # fmt: skip
    parser.add_argument("--location-radius", type=float, default=DEFAULT_LOCATION_RADIUS_M, metavar="M",
                        help="photos this close on the same address are one location (default 5 m)")  # fmt: skip
    parser.add_argument("--name", default="Geotagged photos", help="pretty name for the card")
    parser.add_argument("--license", default="other", help="the photos' license, a Hub id such as cc-by-4.0")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return run_cli(args, lambda options: build_geotagged(
        args.output, args.pbf, photos=args.photos, table=args.table, max_distance_m=args.max_distance,
        location_radius_m=args.location_radius, name=args.name, license=args.license, options=options,
    ))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
