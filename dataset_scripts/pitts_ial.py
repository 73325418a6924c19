"""Pitts-IAL (AddressCLIP, ECCV 2024 §5) from a Pitts250k download + the AddressCLIP annotations.

    python -m dataset_scripts.pitts_ial --pitts-root DIR --annotations DIR --output OUT \\
        [--report FILE] [--strict] [--image-size N] [--push-to-hub REPO]

``--pitts-root`` holds ``000/``…``010/``, ``queries_real/`` and ``datasets/pitts250k_{train,val,test}.mat``
(their ``dbStruct`` gives every image's UTM, zone 17T), or datasets_vg ``@``-named images
whose names carry the coordinates. ``--annotations`` is the release folder (``*_train.json``,
``*_database.json``, ``*_queries.json``) or a CSV/JSONL table with the schema's columns.
Annotation keys are paths relative to ``--pitts-root`` (``000/000000_pitch1_yaw1.jpg``,
``queries_real/000/…``), with or without a leading ``pitts250k/`` or the root folder's own name
(``Pitts250k/000/…``); each must name exactly one existing file (two different ones: reported as
``key_ambiguous``), and the dataset stores it under its key relative to the root. A build that
writes no row to a split, or rejects more than ``--max-rejected-fraction`` of its rows, fails and
writes nothing.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset_scripts.ial_builder import BuildOptions, DatasetInfo, add_common_arguments, build_ial, run_cli
from dataset_scripts.ial_io import Annotation, ImageKeys, Reject, iter_annotations
from dataset_scripts.ial_places import Place, place_from_vg_name, prefer_table
from dataset_scripts.ial_report import BuildReport
from dataset_scripts.vg_names import is_vg_name
from modeling_addressclip.optional import MissingDependencyError, require

__all__ = ["PITTS_ZONE", "PittsIndex", "build_pitts_ial", "read_pitts_mat"]

PITTS_ZONE = "17T"
QUERY_FOLDER = "queries_real"
ROOT_NAME = "pitts250k"
_PLACE = re.compile(r"^(\d+)_pitch\d+_yaw\d+\.\w+$")
DB_FIELDS = ("whichSet", "dbImageFns", "utmDb", "qImageFns", "utmQ", "numImages", "numQueries")

CARD = """# Pitts-IAL

Image address localization (IAL) dataset of Pittsburgh from AddressCLIP (Xu et al., ECCV 2024, §5):
Pitts250k street-view images (Torii et al., CVPR 2013; 24 views per place) with the AddressCLIP
sub-street address annotations `"{main street} between {cross} and {cross}, {neighborhood}"`
and BLIP scene captions. Coordinates come from the Pitts250k `dbStruct` (UTM zone 17T).

## Source and license notes
- Images and coordinates: Pitts250k (Torii, Sivic, Pajdla, Okutomi: "Visual Place Recognition with
  Repetitive Structures", CVPR 2013), Google Street View imagery distributed by its authors on request
  for non-commercial research only. Check those terms before redistributing this directory; do not
  publish it to a public Hub repo without the right to do so.
- Address annotations and captions: AddressCLIP release, https://github.com/xsx1001/AddressCLIP.

## Citation
```bibtex
@inproceedings{xu2024addressclip,
  title     = {AddressCLIP: Empowering Vision-Language Models for City-wide Image Address Localization},
  author    = {Xu, Shixiong and Zhang, Chenghao and Fan, Lubin and Meng, Gaofeng and Xiang, Shiming and Ye, Jieping},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2024}
}
@inproceedings{torii2013visual,
  title     = {Visual Place Recognition with Repetitive Structures},
  author    = {Torii, Akihiko and Sivic, Josef and Pajdla, Tomas and Okutomi, Masatoshi},
  booktitle = {CVPR},
  year      = {2013}
}
```
"""
INFO = DatasetInfo("Pitts-IAL", PITTS_ZONE, CARD, tags=("image-address-localization", "pittsburgh", "pitts250k"))


def _names(value, path: Path, field: str) -> list[str]:
    names = np.atleast_1d(np.asarray(value, dtype=object)).ravel().tolist()
    if not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{path}: dbStruct.{field} must be a cell array of file names")
    return names


def _utm(value, count: int, path: Path, field: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64) if np.size(value) else np.zeros((2, 0))
    if count == 1 and array.shape == (2,):
        array = array.reshape(2, 1)
    if array.shape != (2, count):
        raise ValueError(f"{path}: dbStruct.{field} must be 2 x {count} (east; north), got shape {array.shape}")
    return array


def read_pitts_mat(path: str | Path) -> dict[str, tuple[float, float]]:
    """``{path relative to the Pitts250k root: (east, north)}`` of one ``pitts250k_*.mat`` ``dbStruct``."""
    path = Path(path)
    scipy_io = require("scipy", "reading Pitts250k .mat files").io
    try:
        struct = scipy_io.loadmat(path, squeeze_me=True, struct_as_record=False)["dbStruct"]
    except KeyError:
        raise ValueError(f"{path}: no 'dbStruct' variable") from None
    missing = [f for f in DB_FIELDS if not hasattr(struct, f)]
    if missing:
        raise ValueError(f"{path}: dbStruct lacks field(s) {missing}")
    db, queries = _names(struct.dbImageFns, path, "dbImageFns"), _names(struct.qImageFns, path, "qImageFns")
    for count, total in ((len(db), "numImages"), (len(queries), "numQueries")):
        if int(getattr(struct, total)) != count:
            raise ValueError(f"{path}: dbStruct.{total} = {getattr(struct, total)} but {count} file names")
    utm_db, utm_q = _utm(struct.utmDb, len(db), path, "utmDb"), _utm(struct.utmQ, len(queries), path, "utmQ")
    index = {name: (float(e), float(n)) for name, e, n in zip(db, *utm_db)}
    prefix = QUERY_FOLDER + "/"
    for name, e, n in zip(queries, *utm_q):
        index[name if name.startswith(prefix) else prefix + name] = (float(e), float(n))
    return index


@dataclass
class PittsIndex:
    """Coordinates of every image named in ``datasets/pitts250k_*.mat`` (empty if the folder is absent)."""

    coordinates: dict[str, tuple[float, float]]

    @classmethod
    def load(cls, root: str | Path) -> PittsIndex:
        coordinates: dict[str, tuple[float, float]] = {}
        for mat in sorted((Path(root) / "datasets").glob("pitts250k_*.mat")):
            for name, point in read_pitts_mat(mat).items():
                if (
                    coordinates.setdefault(name, point) != point
                    and np.hypot(*np.subtract(point, coordinates[name])) > 1
                ):
                    raise ValueError(f"{mat}: {name} has coordinates {point}, another .mat gives {coordinates[name]}")
        return cls(coordinates)

    def locate(self, annotation: Annotation) -> Place:
        """Place of a Pitts250k image: ``@``-name, else the ``.mat`` entry; location = place number."""
        key = annotation.key.replace("\\", "/")
        if is_vg_name(key):
            return place_from_vg_name(key, PITTS_ZONE)
        if key not in self.coordinates:
            raise Reject("coordinates_missing", f"{key!r} is in no datasets/pitts250k_*.mat")
        east, north = self.coordinates[key]
        match = _PLACE.match(key.rsplit("/", 1)[-1])
        place = match.group(1) if match else f"{east:.2f}_{north:.2f}"
        prefix = "pitts250k-query/" if key.startswith(QUERY_FOLDER + "/") else "pitts250k/"
        return Place(east, north, PITTS_ZONE, prefix + place)


def build_pitts_ial(
    pitts_root: str | Path, annotations: str | Path, output: str | Path, options: BuildOptions | None = None
) -> BuildReport:
    """Build Pitts-IAL at ``output``; returns the validation report."""
    root, annotations = Path(pitts_root), Path(annotations)
    if not root.is_dir():
        raise FileNotFoundError(f"--pitts-root {root} is not a directory")
    locate = prefer_table(PittsIndex.load(root).locate, PITTS_ZONE)
    images = ImageKeys.under(root, "--pitts-root", names=(ROOT_NAME,))
    return build_ial(output, lambda: iter_annotations(annotations), images, locate, INFO, options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build Pitts-IAL from Pitts250k + AddressCLIP annotations.",
        epilog="Annotation keys are relative to --pitts-root (000/000000_pitch1_yaw1.jpg), with or without a "
        "leading pitts250k/ or the root folder's own name; each must name one file.",
    )
    parser.add_argument("--pitts-root", required=True, help="folder with 000/…010/, queries_real/ and datasets/")
    parser.add_argument(
        "--annotations", required=True, help="release folder (*_train/_database/_queries.json) or table"
    )
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if any(Path(args.pitts_root, "datasets").glob("*.mat")):  # checked before any work starts
        try:
            require("scipy", "reading Pitts250k .mat files")
        except MissingDependencyError as err:
            raise SystemExit(f"pitts_ial: {err}") from None
    return run_cli(args, lambda options: build_pitts_ial(args.pitts_root, args.annotations, args.output, options))


if __name__ == "__main__":
    sys.exit(main())
