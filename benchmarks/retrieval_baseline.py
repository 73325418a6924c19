"""The paper's "Image-GPS-Address" comparison (§6.5, Tab. 5/6): retrieval + reverse geocoding vs AddressCLIP.

    python -m benchmarks.retrieval_baseline --model outputs/demo              # demo city, OSM geocoder
    python -m benchmarks.retrieval_baseline --model DIR --dataset DATA_DIR --geocoder database
    python -m benchmarks.retrieval_baseline --tiny                            # CI: tiny model, 6 addresses

The baseline embeds the ``database`` split with the model's own image encoder, takes each query's
nearest database images (cosine), reads off their UTM coordinates and reverse-geocodes them to
addresses: with the OSM ``ReverseGeocoder`` of the demo city (``--geocoder osm``), or for other
datasets with the address of the nearest labelled database image (``--geocoder database``,
``fixtures.geocoding``). Its
ranked list is the geocoded addresses of the nearest images, duplicates dropped; an image the
geocoder cannot place keeps its rank as a prediction that is always wrong (and is counted).
AddressCLIP ranks its saved address bank for the same queries. Printed: storage of the search
index (fp32), per-query latency at batch 1 and batched (measured in this run), and SSA/SA.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import AutoProcessor

from addressclip_train.run import DataArguments, load_splits
from addressclip_train.train import resolve_recipe
from addressclip_train.trainer import QueryCollator, address_column, unique_addresses
from benchmarks.report import publish
from fixtures.geocoding import MISS, DatabaseGeocoder, geocode_ranked
from modeling_addressclip import Address, AddressCLIPModel
from modeling_addressclip.metrics.address_accuracy.address_accuracy import address_accuracy

TOP_K = (1, 5)
IMAGES_PER_RANK = 4  # nearest images looked at per requested rank (duplicates are dropped)


def make_geocoder(kind: str, database, max_distance_m: float):
    """The OSM reverse geocoder of the demo city, or the nearest-labelled-database-image geocoder."""
    if kind == "database":
        columns = database.select_columns(["utm_east", "utm_north", "address"])
        return DatabaseGeocoder(columns["utm_east"], columns["utm_north"], columns["address"], max_distance_m)
    from dataset_scripts.osm import HELSINKI_PBF, ReverseGeocoder, partition_streets

    return ReverseGeocoder(partition_streets(HELSINKI_PBF), max_distance_m=max_distance_m)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="a trained AddressCLIP directory (with its bank)")
    parser.add_argument("--dataset", default=None, help="IAL dataset dir or Hub id (default: the demo city)")
    parser.add_argument(
        "--geocoder",
        choices=("osm", "database"),
        default=None,
        help="osm: OSM reverse geocoder (default for the demo city); database: address of the "
        "nearest labelled database image (default for other datasets)",
    )
    parser.add_argument("--max-distance", type=float, default=50.0, help="geocoder radius in metres")
    parser.add_argument("--max-queries", type=int, default=None, help="use only the first N query images")
    parser.add_argument("--batch-size", type=int, default=32, help="batch of the batched latency and of encoding")
    parser.add_argument("--latency-queries", type=int, default=64, help="query images timed at batch 1")
    parser.add_argument("--demo-image-size", type=int, default=None, help="demo city: stored image size")
    parser.add_argument("--tiny", action="store_true", help="CI: train a tiny model on 6 demo addresses first")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    if args.model is None and not args.tiny:
        parser.error("--model is required (or --tiny)")
    args.geocoder = args.geocoder or ("osm" if args.dataset is None else "database")
    return args


def train_tiny(dataset: str | None, output: Path) -> Path:
    """A tiny model trained for a few steps with configs/tiny.json (its demo subset, or ``dataset``)."""
    from addressclip_train import train

    argv = [str(resolve_recipe("tiny.json")), "--output_dir", str(output)]
    train.main(argv + (["--dataset_name", str(dataset)] if dataset else []))
    return output


def load_data(args: argparse.Namespace):
    """The train/database/query splits: the demo city (tiny: its 6-address subset) or ``--dataset``."""
    demo = dict(demo_image_size=64, demo_max_addresses=6) if args.tiny else dict(demo_image_size=args.demo_image_size)
    splits, name = load_splits(DataArguments(dataset_name=args.dataset, max_eval_samples=args.max_queries, **demo))
    return splits, name


def load_model(directory: Path, splits):
    """The model in eval mode and its processor; a model without a bank gets train ∪ database."""
    model = AddressCLIPModel.from_pretrained(directory).eval()
    processor = AutoProcessor.from_pretrained(directory)
    if not model.address_bank:
        bank = unique_addresses(address_column(splits["train"]), address_column(splits["database"]))
        model.set_address_bank(bank, processor)
    return model, processor


def pixel_batches(dataset, processor, batch_size: int) -> list[torch.Tensor]:
    """Processed images of ``dataset`` in batches, with the package's query collator."""
    names = unique_addresses(address_column(dataset))
    collator = QueryCollator(processor, {a: i for i, a in enumerate(names)})
    loader = DataLoader(dataset.select_columns(["image", "address"]), batch_size=batch_size, collate_fn=collator)
    return [batch["pixel_values"] for batch in loader]


@torch.no_grad()
def encode_images(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """L2-normalized image embeddings (the same encoder for queries and database)."""
    return model.embed_images(pixel_values)


def nearest_images(query: torch.Tensor, database: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` most cosine-similar database images per query (the VPR retrieval step)."""
    return (query @ database.t()).topk(min(count, database.shape[0]), dim=-1).indices


def coordinates_of(dataset) -> np.ndarray:
    columns = dataset.select_columns(["utm_east", "utm_north"])
    return np.column_stack([columns["utm_east"], columns["utm_north"]]).astype(float)


def geocoder_agreement(geocoder, coordinates: np.ndarray, labels: list[str]) -> float:
    """Fraction of database images the geocoder maps back to their own label (its error without retrieval)."""
    hits = 0
    for (east, north), label in zip(coordinates, labels):
        result = geocoder.from_utm(east, north)
        hits += result.address is not None and result.address == Address.parse(label)
    return hits / max(len(labels), 1)


def retrieval_predictions(query_embeds, database_embeds, coordinates, geocoder, depth: int):
    """Ranked address lists of the Image-GPS-Address pipeline and how many geocoding calls missed."""
    neighbours = nearest_images(query_embeds, database_embeds, depth * IMAGES_PER_RANK).tolist()
    cache: dict[int, str] = {}
    ranked = [geocode_ranked(row, coordinates, geocoder, cache, depth) for row in neighbours]
    misses = sum(text == MISS for text in cache.values())
    top1_misses = sum(row[0] == MISS for row in ranked)
    return ranked, {"geocoded_images": len(cache), "geocoder_misses": misses, "top1_misses": top1_misses}


def addressclip_predictions(model, query_embeds: torch.Tensor, depth: int) -> list[list[str]]:
    """AddressCLIP's ranking of its bank for already-encoded queries (the search half of ``localize``)."""
    bank = model.check_address_bank()
    indices = (query_embeds @ bank.t()).topk(min(depth, bank.shape[0]), dim=-1).indices
    return [[model.address_bank[i] for i in row] for row in indices.tolist()]


def measure_ms(fn, repeats: int = 1) -> float:
    """Milliseconds of one call of ``fn`` (one warm-up call, then the mean of ``repeats``)."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1000 * (time.perf_counter() - start) / repeats


def stage_latency(model, inputs: list[torch.Tensor], database_embeds, geocoder, coordinates) -> dict:
    """ms per query of each stage for these input batches (each call timed after a warm-up call)."""
    bank = model.check_address_bank()
    n = sum(len(p) for p in inputs)
    embeds = [encode_images(model, p) for p in inputs]
    nearest = torch.cat([nearest_images(e, database_embeds, 1) for e in embeds])[:, 0].tolist()
    return {
        "encode": sum(measure_ms(lambda p=p: encode_images(model, p)) for p in inputs) / n,
        "bank_search": sum(measure_ms(lambda e=e: (e @ bank.t()).topk(min(5, len(bank)))) for e in embeds) / n,
        "db_search": sum(measure_ms(lambda e=e: nearest_images(e, database_embeds, 1)) for e in embeds) / n,
        "geocode": measure_ms(lambda: [geocoder.from_utm(*coordinates[i]) for i in nearest]) / n,
    }


def latency_per_query(model, batches, database_embeds, geocoder, coordinates) -> dict:
    """Per-query stage latencies at batch 1 (the queries one by one) and with whole batches."""
    singles = [p[None] for p in torch.cat(batches)]
    return {
        "batch1": stage_latency(model, singles, database_embeds, geocoder, coordinates),
        "batched": stage_latency(model, batches, database_embeds, geocoder, coordinates),
    }


def summarize(args, splits, model, database_embeds, latency, accuracy, misses) -> dict:
    bank = model.check_address_bank()
    dim = database_embeds.shape[1]
    return {
        "geocoder": args.geocoder,
        "queries": len(splits["query"]),
        "database_images": int(database_embeds.shape[0]),
        "bank_addresses": int(bank.shape[0]),
        "embedding_dim": int(dim),
        "storage_bytes": {
            "retrieval": int(database_embeds.shape[0] * dim * 4),
            "addressclip": int(bank.shape[0] * dim * 4),
        },
        "latency_ms": latency,
        "accuracy": accuracy,
        **misses,
    }


def _total(stages: dict, method: str) -> float:
    if method == "retrieval":
        return stages["encode"] + stages["db_search"] + stages["geocode"]
    return stages["encode"] + stages["bank_search"]


def format_tables(result: dict, dataset_name: str) -> str:
    """Tab. 5-like (storage, time) and Tab. 6-like (accuracy) tables."""
    lat, acc, store = result["latency_ms"], result["accuracy"], result["storage_bytes"]
    rows = (
        ("retrieval", f"Image-GPS-Address ({result['geocoder']})", "database", result["database_images"]),
        ("addressclip", "AddressCLIP (bank)", "bank", result["bank_addresses"]),
    )
    lines = [
        f"Image-GPS-Address vs AddressCLIP on {dataset_name}: {result['queries']} queries, "
        f"D={result['embedding_dim']}, {torch.get_num_threads()} thread(s); ms per query",
        "",
        "| method | index (rows) | index fp32 | encode | search | geocode | total b1 | total batched |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, label, index, count in rows:
        b1, bb = lat["batch1"], lat["batched"]
        search = b1["db_search"] if key == "retrieval" else b1["bank_search"]
        geocode = f"{b1['geocode']:.3f}" if key == "retrieval" else "0"
        lines.append(
            f"| {label} | {index} ({count}) | {store[key] / 1024:.1f} KiB | {b1['encode']:.3f} | "
            f"{search:.4f} | {geocode} | {_total(b1, key):.3f} | {_total(bb, key):.3f} |"
        )
    lines += ["", "| method | SSA@1 | SSA@5 | SA@1 | SA@5 |", "|---|---|---|---|---|"]
    for key, label, _, _ in rows:
        cells = " | ".join(f"{100 * acc[key].get(m, float('nan')):.2f}" for m in ("ssa@1", "ssa@5", "sa@1", "sa@5"))
        lines.append(f"| {label} | {cells} |")
    lines.append(
        f"\nstorage ratio database/bank: {store['retrieval'] / store['addressclip']:.1f}x; geocoder "
        f"misses: {result['geocoder_misses']} of {result['geocoded_images']} geocoded images "
        f"({result['top1_misses']} queries with a missed top-1, scored wrong)\ngeocoder alone: "
        f"{100 * result['geocoder_label_agreement']:.2f}% of database images geocode to their label"
    )
    return "\n".join(lines)


def evaluate(args, model_dir: Path) -> dict:
    splits, name = load_data(args)
    model, processor = load_model(model_dir, splits)
    geocoder = make_geocoder(args.geocoder, splits["database"], args.max_distance)
    query_batches = pixel_batches(splits["query"], processor, args.batch_size)
    query_embeds = torch.cat([encode_images(model, p) for p in query_batches])
    database_embeds = torch.cat(
        [encode_images(model, p) for p in pixel_batches(splits["database"], processor, args.batch_size)]
    )
    coordinates, references = coordinates_of(splits["database"]), address_column(splits["query"])
    ks = tuple(k for k in TOP_K if k <= len(model.address_bank))
    ranked, misses = retrieval_predictions(query_embeds, database_embeds, coordinates, geocoder, max(ks))
    accuracy = {
        "retrieval": address_accuracy(ranked, references, k=ks),
        "addressclip": address_accuracy(addressclip_predictions(model, query_embeds, max(ks)), references, k=ks),
    }
    timed = pixel_batches(
        splits["query"].select(range(min(args.latency_queries, len(references)))), processor, args.batch_size
    )
    latency = latency_per_query(model, timed, database_embeds, geocoder, coordinates)
    misses["geocoder_label_agreement"] = geocoder_agreement(geocoder, coordinates, address_column(splits["database"]))
    result = summarize(args, splits, model, database_embeds, latency, accuracy, misses)
    result["table"] = format_tables(result, name)
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model or train_tiny(args.dataset, Path(scratch) / "tiny-model")
        result = evaluate(args, model_dir)
    return publish(result, result["table"], args.json)


if __name__ == "__main__":
    main()
