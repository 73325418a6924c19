"""SF-IAL-Base / SF-IAL-Large (AddressCLIP, ECCV 2024 §5) from SF-XL ``processed/`` + the AddressCLIP annotations.

    python -m dataset_scripts.sf_ial --sfxl-root DIR --annotations DIR --config base|large --output OUT \\
        [--report FILE] [--strict] [--image-size N] [--push-to-hub REPO]

SF-XL ``processed/`` holds 512x512 crops named ``@UTM_east@UTM_north@10@S@lat@lon@pano_id@…@.jpg``
(12 per panorama; the pano_id is the location). ``--sfxl-root`` is the SF-XL folder holding
``processed/`` (or ``processed/`` itself). The release does not document its key format, so an
annotation key may be a path relative to ``processed/`` (``train/@…@.jpg``) or to the SF-XL folder
(``processed/train/@…@.jpg``, or another top folder there), and may carry the SF-XL folder's own
name in front (``sf_xl/processed/train/@…@.jpg``). Each key must name exactly one existing file: a
key that two forms read as different files is reported (``key_ambiguous``), never guessed. The
dataset stores every image under its key relative to ``processed/``, whichever form it was given in.
The area of each config is whatever its annotation files cover: with files for both configs
in one folder, the one whose name contains ``base``/``large`` is used. A build that writes no
row to a split, or rejects more than ``--max-rejected-fraction`` of its rows, fails and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dataset_scripts.ial_builder import BuildOptions, DatasetInfo, add_common_arguments, build_ial, run_cli
from dataset_scripts.ial_io import Annotation, ImageKeys, iter_annotations
from dataset_scripts.ial_places import Place, place_from_vg_name, prefer_table
from dataset_scripts.ial_report import BuildReport

__all__ = ["CONFIGS", "SF_ZONE", "build_sf_ial", "image_keys", "processed_root"]

SF_ZONE = "10S"
CONFIGS = {
    "base": ("SF-IAL-Base", "the top-right (north-east) corner of San Francisco, ~17k locations, 12 views each"),
    "large": ("SF-IAL-Large", "all of San Francisco, ~234k locations and 1.96M images (~121 GB)"),
}

CARD = """# {name}

Image address localization (IAL) dataset of San Francisco from AddressCLIP (Xu et al., ECCV 2024, §5):
{area}. Images are the 512x512 crops of SF-XL `processed/` (Berton et al., CVPR 2022), 12 per
panorama (`location_id` = pano_id), with the AddressCLIP sub-street address annotations
`"{{main street}} between {{cross}} and {{cross}}, {{neighborhood}}"` and BLIP scene captions.
Coordinates come from the SF-XL file names (UTM zone 10S).

## Source and license notes
- Images and coordinates: SF-XL (Berton, Masone, Caputo: "Rethinking Visual Geo-localization for
  Large-Scale Applications", CVPR 2022), Google Street View imagery distributed by its authors for
  non-commercial research only. Check those terms before redistributing this directory; do not
  publish it to a public Hub repo without the right to do so.
- Address annotations and captions: AddressCLIP release, https://github.com/xsx1001/AddressCLIP.

## Citation
```bibtex
@inproceedings{{xu2024addressclip,
  title     = {{AddressCLIP: Empowering Vision-Language Models for City-wide Image Address Localization}},
  author    = {{Xu, Shixiong and Zhang, Chenghao and Fan, Lubin and Meng, Gaofeng and Xiang, Shiming and Ye, Jieping}},
  booktitle = {{European Conference on Computer Vision (ECCV)}},
  year      = {{2024}}
}}
@inproceedings{{berton2022rethinking,
  title     = {{Rethinking Visual Geo-localization for Large-Scale Applications}},
  author    = {{Berton, Gabriele and Masone, Carlo and Caputo, Barbara}},
  booktitle = {{CVPR}},
  year      = {{2022}}
}}
```
"""


def processed_root(sfxl_root: str | Path) -> Path:
    """The ``processed/`` folder: ``sfxl_root/processed`` if it exists, else ``sfxl_root`` itself."""
    root = Path(sfxl_root)
    if not root.is_dir():
        raise FileNotFoundError(f"--sfxl-root {root} is not a directory")
    return root / "processed" if (root / "processed").is_dir() else root


def image_keys(sfxl_root: str | Path) -> ImageKeys:
    """Keys relative to ``processed/`` or to the SF-XL folder, with or without ``processed/`` or its name in front."""
    root = Path(sfxl_root).absolute()
    processed = processed_root(root)
    if processed == root:
        return ImageKeys.under(root, "--sfxl-root", names=("processed",))
    roots, labels = (str(processed), str(root)), ("--sfxl-root/processed", "--sfxl-root")
    return ImageKeys(roots, ("processed", root.name), labels)


def _locate(annotation: Annotation) -> Place:
    return place_from_vg_name(annotation.key, SF_ZONE)


def build_sf_ial(
    sfxl_root: str | Path,
    annotations: str | Path,
    output: str | Path,
    config: str = "base",
    options: BuildOptions | None = None,
) -> BuildReport:
    """Build SF-IAL-``config`` at ``output``; returns the validation report."""
    if config not in CONFIGS:
        raise ValueError(f"--config must be one of {sorted(CONFIGS)}, got {config!r}")
    name, area = CONFIGS[config]
    tags = ("image-address-localization", "san-francisco", "sf-xl")
    info = DatasetInfo(name, SF_ZONE, CARD.format(name=name, area=area), tags=tags)
    images = image_keys(sfxl_root)
    locate = prefer_table(_locate, SF_ZONE)
    others = tuple(c for c in CONFIGS if c != config)
    return build_ial(output, lambda: iter_annotations(annotations, config, others), images, locate, info, options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build SF-IAL-Base/Large from SF-XL processed/ + AddressCLIP.",
        epilog="Annotation keys may be relative to --sfxl-root/processed (train/@...jpg) or to --sfxl-root "
        "(processed/train/@...jpg), with or without the SF-XL folder's name in front; each must name one file.",
    )
    parser.add_argument("--sfxl-root", required=True, help="SF-XL folder holding processed/ (or processed/ itself)")
    parser.add_argument(
        "--annotations", required=True, help="release folder (*_train/_database/_queries.json) or table"
    )
    parser.add_argument("--config", choices=sorted(CONFIGS), default="base", help="base (paper's corner) or large")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    build = lambda options: build_sf_ial(args.sfxl_root, args.annotations, args.output, args.config, options)  # noqa: E731
    return run_cli(args, build)


if __name__ == "__main__":
    sys.exit(main())
