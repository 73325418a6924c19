"""The benchmarks/ scripts in their --tiny (CI) modes, each run as ``python -m benchmarks.NAME`` from the root.

A test reads the script's printed report and the result it writes with ``--json``; the helpers the
benchmarks share with the tests (geocoding, synthetic addresses, the training-step setup and its FLOP
count, the reliability table) are checked directly from ``fixtures``. Tests never import benchmarks.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from fixtures import ROOT
from fixtures.bad_inputs import IMAGE_CASES, bad_rows
from fixtures.geocoding import MISS, DatabaseGeocoder, geocode_ranked
from fixtures.properties import PROPERTIES
from fixtures.suites import Suite, format_table
from fixtures.synthetic import candidates, synthetic_addresses, synthetic_rows
from fixtures.train_step import EQ1_ONLY, build_setup, step_flops
from modeling_addressclip import Address
from modeling_addressclip.metrics.address_accuracy.address_accuracy import address_accuracy


def run_tiny(name: str, tmp_path, *args: str) -> tuple[dict, str]:
    """``python -m benchmarks.NAME --tiny ARGS`` in the root, one thread: (its ``--json`` result, its stdout)."""
    result = tmp_path / f"{name}.json"
    command = [sys.executable, "-m", f"benchmarks.{name}", "--tiny", *args, "--json", str(result)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return json.loads(result.read_text()), proc.stdout


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_retrieval_baseline_tiny_prints_both_tables(tiny_demo_dir, tmp_path):
    result, out = run_tiny("retrieval_baseline", tmp_path, "--dataset", str(tiny_demo_dir), "--geocoder", "osm")
    for row in ("| Image-GPS-Address (osm) | database (", "| AddressCLIP (bank) | bank (", "| method | SSA@1 |"):
        assert row in out, row
    assert "geocoder misses:" in out and "storage ratio database/bank:" in out
    dim = result["embedding_dim"]
    assert result["storage_bytes"]["retrieval"] == result["database_images"] * dim * 4
    assert result["storage_bytes"]["addressclip"] == result["bank_addresses"] * dim * 4
    assert result["bank_addresses"] == 6 and result["database_images"] > result["bank_addresses"]
    for method in ("retrieval", "addressclip"):
        scores = result["accuracy"][method]
        assert set(scores) == {"ssa@1", "ssa@5", "sa@1", "sa@5"}
        assert all(0.0 <= v <= 1.0 for v in scores.values())
        assert scores["ssa@1"] <= scores["ssa@5"] and scores["ssa@1"] <= scores["sa@1"]
    for mode in ("batch1", "batched"):
        assert all(v > 0 and math.isfinite(v) for v in result["latency_ms"][mode].values())
    assert 0 <= result["top1_misses"] <= result["queries"]
    assert 0 <= result["geocoder_misses"] <= result["geocoded_images"]
    assert 0.0 <= result["geocoder_label_agreement"] <= 1.0


def test_database_geocoder_and_miss_handling():
    addresses = ["Bulevardi between Annankatu and Yrjönkatu, Punavuori", "Fredrikinkatu near Bulevardi, Punavuori"]
    geocoder = DatabaseGeocoder([0.0, 100.0], [0.0, 0.0], addresses, max_distance_m=30)
    assert geocoder.from_utm(90.0, 5.0).address.format() == addresses[1]
    assert geocoder.from_utm(50.0, 0.0).address is None  # 50 m from both: a miss
    coordinates = np.array([[0.0, 0.0], [50.0, 0.0], [100.0, 0.0], [1.0, 0.0]])
    ranked = geocode_ranked([1, 0, 3, 2], coordinates, geocoder, {}, depth=3)
    # the miss keeps rank 1, the duplicate of image 0 (image 3) is dropped
    assert ranked == [MISS, addresses[0], addresses[1]]
    padded = geocode_ranked([0], coordinates, geocoder, {}, depth=2)
    assert padded == [addresses[0], MISS]
    scores = address_accuracy([ranked], [addresses[0]], k=(1, 3))
    assert scores == {"ssa@1": 0.0, "ssa@3": 1.0, "sa@1": 0.0, "sa@3": 1.0}


def test_inference_tiny_times_localization_against_the_encode_and_zero_shot_in_full(tmp_path):
    result, out = run_tiny("inference", tmp_path)
    (arch,) = result["archs"]
    rows = arch["rows"]
    # every batch size x N x bank dtype, each with its own measured ratio
    assert {(r["batch"], r["n"], r["bank_dtype"]) for r in rows} == {
        (b, n, d) for b in (1, 4) for n in (64, 1000) for d in ("float32", "float16")
    }
    for row in rows:
        assert row["encode_ms"] > 0 and row["search_ms"] > 0
        assert row["ratio"] == pytest.approx(row["localize_ms"] / row["encode_ms"])
        assert f"| {row['batch']} | {row['n']:,} | {row['bank_dtype']} |" in out
    zero_shot = arch["zero_shot"]
    assert zero_shot["n"] == 64 and zero_shot["text_encode_ms"] > 0
    assert zero_shot["per_image_ms"] == pytest.approx(zero_shot["text_encode_ms"] + rows[0]["encode_ms"])
    assert "zero-shot re-encoding at N = 64, measured in full" in out
    assert result["default_bank_dtype"] == "float32" and "half_bank" not in result


def test_half_bank_cost_scores_every_bank_dtype_on_the_same_embeddings(tmp_path):
    from benchmarks.inference import half_bank_cost
    from fixtures.tiny_models import ADDRESSES, save_tiny_model

    directory = save_tiny_model(tmp_path / "model")
    rows = [{"image": row["image"], "address": ADDRESSES[i % 4]} for i, row in enumerate(synthetic_rows(12, 32))]
    result = half_bank_cost(directory, rows, batch_size=5)
    assert result["query_images"] == 12 and result["bank_size"] == len(ADDRESSES)
    for dtype in ("float32", "float16", "bfloat16"):
        assert set(result[dtype]) == {"ssa@1", "ssa@5", "sa@1", "sa@5"}
        assert all(0 <= value <= 100 for value in result[dtype].values())
    # the fp32 row is the model's own ranking: localize() on the same rows gives the same SSA@1
    from transformers import AutoProcessor

    from modeling_addressclip import AddressCLIPModel
    from modeling_addressclip.image_utils import image_pixels
    from modeling_addressclip.metrics import address_accuracy

    model = AddressCLIPModel.from_pretrained(directory).eval()
    pixels = image_pixels(AutoProcessor.from_pretrained(directory), [r["image"] for r in rows])
    _, indices = model.localize(pixels, top_k=5)
    predictions = [[model.address_bank[i] for i in row] for row in indices.tolist()]
    expected = address_accuracy(predictions, [r["address"] for r in rows], k=(1, 5))
    assert result["float32"]["ssa@1"] == pytest.approx(100 * expected["ssa@1"])


def test_table2_tiny_runs_every_row_from_one_reused_standin(tmp_path):
    workdir = tmp_path / "table2"
    result, out = run_tiny("table2", tmp_path, "--workdir", str(workdir))
    rows = result["rows"]
    assert list(rows) == ["zero-shot CLIP", "CLIP + address", "CoOp", "CoCoOp", "MaPLe", "AddressCLIP"]
    full = rows["AddressCLIP"][0]["trainable"]
    assert rows["zero-shot CLIP"][0]["trainable"] == 0 and rows["CLIP + address"][0]["trainable"] == full
    for method in ("CoOp", "CoCoOp", "MaPLe"):  # only the prompts train
        assert 0 < rows[method][0]["trainable"] < full / 10
        saved = json.loads((workdir / f"captions-only-{method.lower()}-seed0" / "config.json").read_text())
        assert saved["prompt_learning"] == method.lower()
    standin = json.loads((workdir / "standin-captions-only" / "config.json").read_text())
    assert standin["caption_includes_address"] is False and standin["address_loss_weight"] == 0
    assert len(result["orderings"]) == 5 and "| CoCoOp |" in out
    again, out = run_tiny("table2", tmp_path, "--workdir", str(workdir))  # the stand-in is trained once
    assert "reusing the stand-in CLIP" in out and again["standin"] == result["standin"]


def test_synthetic_candidates_are_distinct_parseable_and_keep_the_bank_first():
    texts = candidates(["Fredrikinkatu near Bulevardi, Punavuori"], 3_000)
    assert len(texts) == len(set(texts)) == 3_000 and texts[0] == "Fredrikinkatu near Bulevardi, Punavuori"
    assert all(Address.parse(t) for t in texts[:50] + texts[-50:])
    assert len(set(synthetic_addresses(30_000))) == 30_000


def test_train_throughput_tiny_times_both_models_with_flops_and_peak(tmp_path):
    result, out = run_tiny("train_throughput", tmp_path)
    rows = result["rows"]
    assert set(rows) == {"AddressCLIP", "CLIP", EQ1_ONLY}
    for name, row in rows.items():
        assert f"| {name} | " in out
        assert row["samples_per_s"] > 0 and row["gflop_per_step"] > 0 and 0 < row["peak_fraction"] < 1
        assert math.isclose(row["samples_per_s"] * row["step_ms"] / 1000, 8)  # batch 8
    # same config, batch and weights: AddressCLIP with Eq. 1 alone does CLIP's FLOPs (+ one N x N x D product for
    # the output logits, which CLIP shares with its loss); captions add text FLOPs
    eq1, clip = rows[EQ1_ONLY]["gflop_per_step"], rows["CLIP"]["gflop_per_step"]
    assert 0 < eq1 - clip <= 2 * 8 * 8 * 16 / 1e9 * 1.001
    assert rows["AddressCLIP"]["gflop_per_step"] > rows["CLIP"]["gflop_per_step"]
    assert result["peak_gflops"] > 0 and result["attention"] == "sdpa" and result["optimizer"].startswith("AdamW")
    assert set(result["per_flop_ratio"]) == {"AddressCLIP", EQ1_ONLY}
    assert "per-FLOP ratio AddressCLIP / CLIP:" in out and "AddressCLIP share of peak:" in out


def test_flop_count_includes_attention_and_models_share_weights():
    setup = build_setup("tiny", 4)
    clip, address = setup.models["CLIP"], setup.models["AddressCLIP"]
    assert all(torch.equal(p, clip.state_dict()[k]) for k, p in address.state_dict().items())
    # CPU SDPA kernels are invisible to FlopCounterMode; step_flops counts them through the math backend
    with FlopCounterMode(display=False) as fused:
        clip(**setup.batches["CLIP"]).loss.backward()
    assert step_flops(setup, "CLIP") > fused.get_total_flops()
    # the from-scratch text encoder has the tokenizer's vocabulary, not CLIP's 49,408 rows
    assert address.config.text_config.vocab_size == len(setup.processor.tokenizer) < 49408


def test_input_pipeline_tiny_reports_delivered_vs_consumed(tiny_demo_dir, tmp_path):
    result, out = run_tiny("input_pipeline", tmp_path, "--dataset", str(tiny_demo_dir))
    settings = {(row["source"], row["decode"], row["workers"]) for row in result["rows"]}
    for source in ("demo", "photos 640x480"):
        assert {(source, "datasets decode", 0), (source, "draft decode", 0), (source, "draft decode", 1)} <= settings
        assert f"goal {source} (draft decode, 0 workers = train.py default):" in out
    for row in result["rows"]:
        assert row["delivered"] > 0 and row["consumed"] > 0 and row["end_to_end"] > 0
        assert math.isclose(row["ratio"], row["delivered"] / row["consumed"])
        assert f"| {row['source']} | {row['stored']} | {row['decode']} | {row['workers']} |" in out
    assert set(result["goals"]) == {"demo", "photos 640x480"}
    assert {row["stored"] for row in result["rows"]} == {"64x64", "640x480"}  # the fixture's and the photos' size


def test_reliability_tiny_prints_one_table_without_failures(tmp_path):
    result, out = run_tiny("reliability", tmp_path, "--kills", "0")  # exit status 0: no suite failed
    assert "| suite | cases tried | failures | seconds | note |" in out and "failures:" not in out
    suites = result["suites"]
    assert list(suites) == ["bad images", "bad rows", "kills survived", "fuzz examples run"]
    assert suites["kills survived"]["skipped"] and "| kills survived | - | - |" in out
    expected = {"bad images": len(IMAGE_CASES), "bad rows": len(bad_rows())}
    for name, tried in expected.items():
        assert suites[name]["tried"] == tried and f"| {name} | {tried} | 0 |" in out
    fuzzed = suites["fuzz examples run"]["tried"]
    assert f"{result['examples']:,} fuzz examples per property" in out
    assert len(PROPERTIES) <= fuzzed <= len(PROPERTIES) * result["examples"]
    assert f"| fuzz examples run | {fuzzed} | 0 |" in out
    assert not any(suite["failures"] for suite in suites.values())


def test_reliability_table_lists_failures_under_it():
    failing = Suite("bad rows", tried=3, failures=["x missing: accepted"])
    table = format_table([failing])
    assert "| bad rows | 3 | 1 |" in table and table.endswith("failures:\n- bad rows: x missing: accepted")


@pytest.mark.slow
def test_gpu_check_dry_run_prints_every_measurement_and_the_projection(tmp_path):
    """The prepared GPU script runs end to end on CPU (tiny sizes) before a GPU is ever lent."""
    out = tmp_path / "gpu_check.json"
    command = [sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", "--json", str(out)]
    proc = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=1200, env=dict(os.environ, OMP_NUM_THREADS="1")
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {"AddressCLIP, bf16", "CLIP, bf16", "AddressCLIP, fp32", "CLIP, fp32"} <= set(result["train"])
    assert all(row["samples_per_s"] > 0 for row in result["train"].values())
    assert set(result["localization_images_per_s"]) == {"localization", "localization compiled"}
    assert result["host_decode"]["jpegs_per_s"] > 0 and result["short_training"]["seconds"] > 0
    projection = result["projection"]
    assert projection["hours"] == pytest.approx(234_000 * 100 / projection["samples_per_s"] / 3600)
    assert "Pitts-IAL 100 epochs (23.4 M samples)" in proc.stdout and result["table"] in proc.stdout
