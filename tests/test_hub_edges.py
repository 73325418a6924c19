"""The model behaves like a well-kept Hugging Face model where a user touches it.

Zero-shot template, load -> save -> reload with remote code, every input kind transformers' image
pipelines take, free-text candidates, the pinned PIL image processor, tokenizer loading without a
prompt, and abstention ("no confident address").
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import subprocess
import sys
import textwrap
import threading

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessorPil, pipeline

from fixtures import ROOT
from fixtures.bad_inputs import assert_same_prediction
from fixtures.tiny_models import ADDRESSES, save_tiny_model
from modeling_addressclip.pipeline_addressclip import TASK, pinned_image_processor

RNG = np.random.default_rng(3)
PIXELS = [RNG.integers(0, 256, (36, 44, 3), dtype=np.uint8) for _ in range(4)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), seed=5)


@pytest.fixture(scope="module")
def localizer(model_dir):
    return pipeline(TASK, model=str(model_dir), trust_remote_code=True)


def _addresses(result):
    return [row["address"] for row in result]


# ----------------------------------------------------------------------------- zero-shot template
def test_zero_shot_pipeline_defaults_to_the_address_template_and_agrees_with_localization(model_dir, localizer):
    classifier = pipeline("zero-shot-image-classification", model=str(model_dir), trust_remote_code=True)
    assert type(classifier).__name__ == "AddressZeroShotImageClassificationPipeline"
    preprocess, _, _ = classifier._sanitize_parameters(candidate_labels=ADDRESSES)
    assert preprocess["hypothesis_template"] == "A street view photo at {}."
    for pixels in PIXELS:
        image = Image.fromarray(pixels)
        labels = classifier(image, candidate_labels=ADDRESSES)
        ranked = localizer(image, candidate_addresses=ADDRESSES, top_k=len(ADDRESSES), min_score=0)
        assert labels[0]["label"] == ranked[0]["address"]
        assert [row["label"] for row in labels] == _addresses(ranked)
    explicit = classifier(Image.fromarray(PIXELS[0]), candidate_labels=ADDRESSES, hypothesis_template="{}")
    assert len(explicit) == len(ADDRESSES)  # an explicit template still wins


# ----------------------------------------------------------------------------- save round trips
ROUND_TRIP = textwrap.dedent(
    """
    import sys
    sys.modules["modeling_addressclip"] = None  # only the directory's own code
    from PIL import Image
    from transformers import AutoModel, AutoProcessor, pipeline
    source, resaved, piped = sys.argv[1:4]
    model = AutoModel.from_pretrained(source, trust_remote_code=True)
    model.config.abstain_threshold = 0.0  # "modify"
    model.save_pretrained(resaved)
    AutoProcessor.from_pretrained(source, trust_remote_code=True).save_pretrained(resaved)
    image = Image.new("RGB", (40, 30), (120, 80, 60))
    first = pipeline("image-address-localization", model=resaved, trust_remote_code=True)
    first.save_pretrained(piped)
    again = pipeline("image-address-localization", model=piped, trust_remote_code=True)
    assert first(image, top_k=3) == again(image, top_k=3)
    print("ok", first(image, top_k=1)[0]["address"])
    """
)


def test_load_modify_save_reload_keeps_the_pipeline_code(model_dir, tmp_path):
    resaved, piped = tmp_path / "resaved", tmp_path / "piped"
    env = {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-c", ROUND_TRIP, str(model_dir), str(resaved), str(piped)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for directory in (resaved, piped):
        assert (directory / "pipeline_addressclip.py").is_file() and (directory / "image_utils.py").is_file()
        names = json.loads((directory / "config.json").read_text())["custom_pipelines"]
        assert {TASK, "zero-shot-image-classification"} <= set(names)
    assert proc.stdout.split()[-1] and proc.stdout.startswith("ok")


# ----------------------------------------------------------------------------- input kinds
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A loopback HTTP server serving one PNG (online URL input without leaving the machine)."""
    folder = tmp_path_factory.mktemp("www")
    Image.fromarray(PIXELS[1]).save(folder / "street.png")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/street.png"
    server.shutdown()


def test_every_input_kind_gives_the_same_answer_as_the_file(localizer, served, tmp_path):
    path = tmp_path / "street.png"
    Image.fromarray(PIXELS[1]).save(path)
    expected = localizer(str(path), top_k=3, min_score=0)
    as_float = PIXELS[1].astype(np.float32) / 255.0
    kinds = {
        "url": served,
        "raw bytes": path.read_bytes(),
        "datasets value": {"bytes": path.read_bytes(), "path": None},
        "uint8 array": PIXELS[1],
        "float array in [0, 1]": as_float,
        "CHW array": np.moveaxis(PIXELS[1], -1, 0),
        "CHW float tensor": torch.from_numpy(np.moveaxis(as_float, -1, 0).copy()),
        "HWC uint8 tensor": torch.from_numpy(PIXELS[1]),
    }
    for kind, source in kinds.items():
        try:
            assert_same_prediction(localizer(source, top_k=3, min_score=0), expected)
        except AssertionError as err:
            raise AssertionError(f"{kind}: {err}") from None
    assert_same_prediction(localizer(inputs=str(path), top_k=3, min_score=0), expected)


def test_an_unreachable_url_is_a_clear_error_not_a_missing_file(localizer):
    # ValueError: under trust_remote_code the class is the directory's own copy of ImageLoadError
    with pytest.raises(ValueError, match=r"cannot fetch URL 'http://127\.0\.0\.1:9/x\.jpg'.*offline\?"):
        localizer("http://127.0.0.1:9/x.jpg")


def test_a_datasets_image_column_is_a_batch(localizer, tmp_path):
    rows = datasets.Dataset.from_dict({"image": [Image.fromarray(p) for p in PIXELS]})
    rows = rows.cast_column("image", datasets.Image())
    decoded = localizer(rows["image"], top_k=2, min_score=0)
    undecoded = localizer(rows.cast_column("image", datasets.Image(decode=False))["image"], top_k=2, min_score=0)
    one_by_one = [localizer(Image.fromarray(p), top_k=2, min_score=0) for p in PIXELS]
    assert len(decoded) == len(PIXELS)
    assert [_addresses(r) for r in decoded] == [_addresses(r) for r in undecoded] == [_addresses(r) for r in one_by_one]


# ----------------------------------------------------------------------------- candidates
FREE_TEXT = ["Mannerheimintie", "Broadway, Manhattan", "Unter den Linden, Berlin-Mitte", "Mannerheimintie 5, Helsinki"]


def test_free_text_candidates_are_ranked_without_parts(localizer):
    result = localizer(Image.fromarray(PIXELS[0]), candidate_addresses=FREE_TEXT + ADDRESSES[:1], top_k=5, min_score=0)
    assert sorted(_addresses(result)) == sorted(FREE_TEXT + ADDRESSES[:1])
    parts = {row["address"]: (row["main_street"], row["neighborhood"]) for row in result}
    assert parts["Broadway, Manhattan"] == (None, None)
    assert parts[ADDRESSES[0]] == ("Mannerheimintie", "Kluuvi")
    with pytest.raises(ValueError, match="between"):  # claims the address form, so it must parse
        localizer(Image.fromarray(PIXELS[0]), candidate_addresses=["Forbes Avenue between Craig Street, Oakland"])


# ----------------------------------------------------------------------------- processors
def test_the_pipeline_pins_the_pil_image_processor_training_used(localizer):
    assert isinstance(localizer.image_processor, CLIPImageProcessorPil)
    settings = localizer.image_processor.to_dict()
    other_backend = type("CLIPImageProcessor", (), {"to_dict": lambda self: dict(settings)})()
    pinned = pinned_image_processor(other_backend)
    image = Image.fromarray(PIXELS[2])
    assert isinstance(pinned, CLIPImageProcessorPil)
    assert torch.equal(
        pinned(images=image, return_tensors="pt")["pixel_values"],
        localizer.image_processor(images=image, return_tensors="pt")["pixel_values"],
    )


TOKENIZER_LOADS = textwrap.dedent(
    """
    import sys
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPTokenizer
    directory = sys.argv[1]
    AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
    CLIPTokenizer.from_pretrained(directory)
    AutoImageProcessor.from_pretrained(directory)
    import modeling_addressclip  # registers the model type: then the plain call needs no remote code either
    AutoTokenizer.from_pretrained(directory)
    print("loaded")
    """
)


def test_tokenizer_and_image_processor_load_without_a_prompt(model_dir):
    proc = subprocess.run(
        [sys.executable, "-c", TOKENIZER_LOADS, str(model_dir)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loaded" in proc.stdout and "Do you wish to run the custom code" not in proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- abstention
def test_min_score_abstains_and_the_config_sets_its_default(model_dir, tmp_path):
    image = Image.fromarray(PIXELS[3])
    localizer = pipeline(TASK, model=str(model_dir), trust_remote_code=True)
    answered = localizer(image, top_k=len(ADDRESSES))
    assert len(answered) == len(ADDRESSES)  # no threshold in this config: never abstains
    assert localizer(image, min_score=1.0) == []
    best = answered[0]["score"]
    # an abstain threshold on the best score, not a filter: at the best score the whole ranking comes back
    assert _addresses(localizer(image, min_score=best, top_k=3)) == _addresses(answered[:3])
    assert localizer(image, min_score=min(1.0, best + 1e-6)) == []
    config = json.loads((model_dir / "config.json").read_text())
    strict = tmp_path / "strict"
    strict.mkdir()
    for item in model_dir.iterdir():
        (strict / item.name).write_bytes(item.read_bytes())
    (strict / "config.json").write_text(json.dumps({**config, "abstain_threshold": min(1.0, best + 1e-6)}))
    cautious = pipeline(TASK, model=str(strict), trust_remote_code=True)
    assert cautious(image) == [] and len(cautious(image, min_score=0, top_k=2)) == 2
    with pytest.raises(ValueError, match="min_score"):
        localizer(image, min_score=1.5)


def test_operating_points_keep_the_asked_coverage():
    from addressclip_train.abstention import abstention_curve, operating_point

    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    correct = [True, True, True, False, True, False, False, True, False, False]
    point = operating_point(scores, correct, 0.5)
    assert point.threshold == 0.5 and point.coverage == 0.5 and point.ssa_at_1 == 0.8
    assert operating_point(scores, correct, 1.0).threshold == 0.05
    curve = abstention_curve(scores, correct, (1.0, 0.9, 0.5))
    assert [p.coverage for p in curve] == [1.0, 0.9, 0.5] and curve[0].ssa_at_1 == 0.5


def test_raw_bytes_of_a_heic_photo_localize(localizer, tmp_path):
    import pillow_heif

    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    Image.fromarray(PIXELS[0]).save(buffer, format="HEIF", quality=95)
    assert buffer.getvalue()[4:12] == b"ftypheic"
    assert len(localizer(buffer.getvalue(), top_k=2, min_score=0)) == 2
