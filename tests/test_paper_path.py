"""The paper's path rehearsed with real CLIP artifacts: OpenAI's vocabulary, the Hub layout of
``openai/clip-vit-base-patch16``, the ``pitts_ial`` recipe down to the optimizer, gradient checkpointing, and
``train.py pitts_ial`` end to end on 640 x 480 Pitts250k-layout photos.

The vocabulary comes from the pinned ``open_clip_torch`` wheel, downloaded from PyPI once into
``$ADDRESSCLIP_CACHE`` (:mod:`fixtures.clip_checkpoint`); a failed download fails these tests with pip's output.
The ViT-B/16 checkpoint (random weights, ~600 MB) is written once per session.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoProcessor, CLIPConfig, CLIPModel, CLIPTokenizer

from addressclip_train import train
from addressclip_train.run import ModelArguments, build_model
from addressclip_train.trainer import AddressCLIPTrainer
from dataset_scripts import pitts_ial
from fixtures import ROOT
from fixtures.clip_checkpoint import (
    BPE_BYTES,
    HUB_FILES,
    NUM_MERGES,
    TEXT_CONFIG,
    VISION_CONFIG,
    VOCAB_SIZE,
    bpe_file,
    byte_symbols,
    clip_image_processor,
    make_clip_checkpoint,
    open_clip_simple_tokenizer,
    openai_clip_tokenizer,
)
from fixtures.pitts_photos import PITTS_SIZE, make_pitts_photos
from fixtures.raw_layouts import RELEASE_ADDRESSES
from fixtures.tiny_models import (
    ADDRESSES,
    CAPTIONS,
    accelerate_launch,
    tiny_clip_config,
    tiny_config,
    tiny_processor,
    tiny_rows,
)
from modeling_addressclip import AddressCLIPCollator, AddressCLIPModel
from modeling_addressclip.configuration_addressclip import DEFAULT_ADDRESS_TEMPLATE

# Real addresses: Finnish, German (ß), US streets with apostrophes and numbers, plus the release's own forms.
REAL_ADDRESSES = [
    "Hämeentie 3, Sörnäinen",
    "Pohjoisesplanadi 11–13, Kaartinkaupunki",
    "Mäkelänkatu 52 B, Vallila",
    "Åggelbyntie near Kyläkirkontie, Oulunkylä",
    "Yrjönkatu between Lönnrotinkatu and Eerikinkatu, Kamppi",
    "Schloßstraße 12, 14059 Berlin",
    "Große Hamburger Straße 17, Mitte",
    "Weißenburger Straße near Äußere Maximilianstraße, Haidhausen",
    "Straße des 17. Juni between Ebertstraße and Yitzhak-Rabin-Straße, Tiergarten",
    "KÖNIGSSTRASSE 1A, STUTTGART",
    "O'Hara Street between Fifth Avenue and Forbes Avenue, Oakland",
    "McKee's Rocks Bridge near Island Avenue, Esplen",
    "St. Mary's Place, 1600 Pennsylvania Avenue NW, Washington, DC 20500",
    "5th Ave & W 34th St, Manhattan",
    "Carson St. near S 18th St, South Side Flats",
    "Martin Luther King Jr. East Busway near Herron Station, Polish Hill",
    "I-376 E exit 72A (Grant St), Downtown",
    "Children's Hospital Drive, Lawrenceville",
    "Don't walk on 15th St. NW — it's closed",
]
TEXTS = [
    *REAL_ADDRESSES,
    *(text for pair in RELEASE_ADDRESSES for text in pair),
    *ADDRESSES,
    *(c for c in CAPTIONS if c),
    *(DEFAULT_ADDRESS_TEMPLATE.format(address=a) for a in REAL_ADDRESSES),
    " ".join(REAL_ADDRESSES),  # > 77 tokens: truncated, the last kept token replaced by <|endoftext|>
]
TOKEN_EMBEDDING = "text_model.embeddings.token_embedding.weight"
# open_clip cleans with ftfy and html.unescape first (curly quotes, ligatures, entities); transformers' CLIPTokenizer,
# and so the Hub's tokenizer.json, does not. These are the only texts here on which the two differ.
CLEANED_BY_OPEN_CLIP = ["O’Hara Street near Fifth Avenue, Oakland", "ﬁfth Avenue", "Forbes &amp; Craig"]


@pytest.fixture(scope="module")
def tokenizers():
    return openai_clip_tokenizer(), open_clip_simple_tokenizer()


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    """``openai/clip-vit-base-patch16``'s Hub layout with random weights, written once per session."""
    return make_clip_checkpoint(tmp_path_factory.mktemp("hub") / "clip-vit-base-patch16")


@pytest.fixture(scope="session")
def pitts_dir(tmp_path_factory) -> Path:
    """Pitts-IAL built by ``python -m dataset_scripts.pitts_ial`` from a Pitts250k tree of 640 x 480 JPEGs."""
    base = tmp_path_factory.mktemp("pitts_photos")
    tree = make_pitts_photos(base)
    argv = ["--pitts-root", str(tree.root), "--annotations", str(tree.annotations), "--output", str(base / "out")]
    assert pitts_ial.main([*argv, "--no-progress"]) == 0
    return base / "out"


def _ids(simple, text: str) -> list[int]:
    return [simple.sot_token_id, *simple.encode(text), simple.eot_token_id]


# ----------------------------------------------------------------------------- the vocabulary
def test_openai_vocabulary_comes_from_the_open_clip_wheel(tokenizers):
    tokenizer, simple = tokenizers
    assert bpe_file().stat().st_size == BPE_BYTES
    vocab = tokenizer.get_vocab()
    assert len(tokenizer) == len(vocab) == simple.vocab_size == VOCAB_SIZE == 49_408
    symbols = byte_symbols()
    assert [vocab[s] for s in symbols] == list(range(256))
    assert [vocab[s + "</w>"] for s in symbols] == list(range(256, 512))
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    assert len(merges) == NUM_MERGES and vocab["in"] == 512  # line 1 of the file is the first merge, "i n"
    assert (tokenizer.bos_token, tokenizer.bos_token_id) == ("<|startoftext|>", 49406)
    assert (tokenizer.eos_token, tokenizer.eos_token_id, tokenizer.pad_token_id) == ("<|endoftext|>", 49407, 49407)
    ordinary = {token: index for token, index in simple.encoder.items() if index < 49406}  # specials: <start_of_text>
    assert ordinary == {token: index for token, index in vocab.items() if index < 49406}
    assert (simple.sot_token_id, simple.eot_token_id) == (49406, 49407)


def test_tokenizer_gives_open_clips_ids_on_real_addresses(tokenizers):
    tokenizer, simple = tokenizers
    ours = tokenizer(TEXTS, truncation=True, max_length=77)["input_ids"]
    theirs = simple(TEXTS, context_length=77)
    for text, ids, row in zip(TEXTS, ours, theirs):  # open_clip pads its 77 columns with 0
        assert ids == row[: len(ids)].tolist() and not row[len(ids) :].any(), text
    assert max(len(ids) for ids in ours) == 77 and ours[-1][-1] == 49407


def test_tokenizers_differ_only_by_open_clips_text_cleaning(tokenizers):
    tokenizer, simple = tokenizers
    for text in CLEANED_BY_OPEN_CLIP:
        assert tokenizer(text)["input_ids"] != _ids(simple, text), text
        assert tokenizer(simple.clean_fn(text))["input_ids"] == _ids(simple, text), text


# ----------------------------------------------------------------------------- the checkpoint
def test_checkpoint_has_the_hub_layout_and_the_real_configs(clip_dir):
    assert sorted(p.name for p in clip_dir.iterdir()) == sorted(HUB_FILES)
    config = CLIPConfig.from_pretrained(clip_dir)
    for name, value in TEXT_CONFIG.items():
        assert getattr(config.text_config, name) == value, name
    for name, value in VISION_CONFIG.items():
        assert getattr(config.vision_config, name) == value, name
    assert (config.projection_dim, config.logit_scale_init_value) == (512, 2.6592)
    assert (config.vision_config.patch_size, config.vision_config.image_size, config.text_config.hidden_size) == (
        16,
        224,
        512,
    )
    processor = AutoProcessor.from_pretrained(clip_dir)
    assert processor.image_processor.to_dict() == clip_image_processor().to_dict()  # the Hub's legacy file
    assert len(processor.tokenizer) == VOCAB_SIZE and processor.tokenizer.model_max_length == 77
    from_files = CLIPTokenizer(vocab=str(clip_dir / "vocab.json"), merges=str(clip_dir / "merges.txt"))
    assert from_files(TEXTS[:10])["input_ids"] == processor.tokenizer(TEXTS[:10])["input_ids"]


def test_from_clip_pretrained_loads_every_key_and_keeps_the_vocabulary(clip_dir):
    model, info = AddressCLIPModel.from_clip_pretrained(clip_dir, output_loading_info=True)
    assert info["missing_keys"] == info["unexpected_keys"] == info["mismatched_keys"] == set()
    assert not info["error_msgs"]
    assert model.text_model.embeddings.token_embedding.num_embeddings == VOCAB_SIZE
    stored = load_file(str(clip_dir / "model.safetensors"))
    state = model.state_dict()
    assert set(stored) == set(state)
    for name in (TOKEN_EMBEDDING, "vision_model.embeddings.patch_embedding.weight"):
        assert torch.equal(state[name], stored[name]), name

    rows = [{"address": a, "caption": ""} for a in ADDRESSES]
    model, processor = build_model(ModelArguments(model_name_or_path=str(clip_dir)), rows)
    assert isinstance(model, AddressCLIPModel) and len(processor.tokenizer) == VOCAB_SIZE
    assert model.config.text_config.vocab_size == model.text_model.embeddings.token_embedding.num_embeddings == 49_408
    assert torch.equal(model.text_model.embeddings.token_embedding.weight, stored[TOKEN_EMBEDDING])


# ----------------------------------------------------------------------------- the recipe reaches the optimizer
def _recipe_trainer(tmp_path: Path, *flags: str) -> tuple[AddressCLIPTrainer, object]:
    """The Trainer of ``train.py pitts_ial`` (parse_args, build_model, AddressCLIPTrainer) on a tiny plain CLIP."""
    clip = tmp_path / "tiny-clip"
    CLIPModel(tiny_clip_config()).save_pretrained(clip)
    tiny_processor().save_pretrained(clip)
    argv = ["pitts_ial", "--model_name_or_path", str(clip), "--output_dir", str(tmp_path / "out"), *flags]
    model_args, _, training_args = train.parse_args(argv)
    model, processor = build_model(model_args, None)
    rows = tiny_rows(4)
    trainer = AddressCLIPTrainer(
        model=model,
        args=training_args,
        train_dataset=rows,
        eval_dataset=rows,
        data_collator=AddressCLIPCollator.from_config(processor, model.config),
        processing_class=processor,
        bank_addresses=ADDRESSES,
    )
    return trainer, training_args


def test_pitts_recipe_settings_reach_the_optimizer_and_the_schedule(tmp_path):
    trainer, args = _recipe_trainer(tmp_path)
    steps = 1000
    trainer.create_optimizer_and_scheduler(num_training_steps=steps)
    optimizer, scheduler = trainer.optimizer, trainer.lr_scheduler
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["fused"] is True  # adamw_torch_fused: torch's fused AdamW runs on CPU as on GPU
    for group in optimizer.param_groups:
        assert (group["lr"], group["betas"], group["weight_decay"]) == (2.4e-5, (0.9, 0.98), 0.0)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(trainer.model.parameters()))
    assert args.warmup_steps == 0 and scheduler.get_last_lr() == [2.4e-5] * len(optimizer.param_groups)
    lrs = []
    for _ in range(steps):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()  # no gradients yet: the parameters stay, the schedule advances as in training
        scheduler.step()
    final = scheduler.get_last_lr()[0]
    # cosine_with_min_lr: lr(t) = min + (max - min) * (1 + cos(pi t / N)) / 2; the last step uses t = N - 1
    last = 2.4e-8 + (2.4e-5 - 2.4e-8) * (1 - math.cos(math.pi / steps)) / 2
    assert lrs[0] == 2.4e-5 and math.isclose(lrs[-1], last, rel_tol=1e-9) and math.isclose(final, 2.4e-8, rel_tol=1e-9)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    config = trainer.model.config
    assert (config.address_loss_weight, config.caption_loss_weight, config.geography_loss_weight) == (1.0, 0.2, 0.8)
    assert trainer.data_collator.use_captions and trainer.data_collator.address_template == DEFAULT_ADDRESS_TEMPLATE
    flagged, _ = _recipe_trainer(tmp_path / "flag", "--caption_loss_weight", "0", "--geography_loss_weight", "0.5")
    assert (flagged.model.config.caption_loss_weight, flagged.model.config.geography_loss_weight) == (0.0, 0.5)
    assert not flagged.data_collator.use_captions  # beta = 0: no caption texts are tokenized


def test_pitts_recipe_uses_bf16_only_where_a_gpu_supports_it(tmp_path):
    trainer, args = _recipe_trainer(tmp_path)
    supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    assert args.bf16 is supported, f"configs/pitts_ial.json's bf16 resolved to {args.bf16} (GPU bf16: {supported})"
    assert trainer.accelerator.mixed_precision == ("bf16" if supported else "no")


# ----------------------------------------------------------------------------- gradient checkpointing
def _loss_and_grads(model: AddressCLIPModel, batch: dict) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    output = model(**batch)
    output.loss.backward()
    losses = {k: getattr(output, k).item() for k in ("loss", "loss_address", "loss_caption", "loss_geography")}
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return losses, grads


def test_gradient_checkpointing_gives_the_same_losses_and_gradients():
    processor = tiny_processor()
    torch.manual_seed(0)
    model = AddressCLIPModel(tiny_config(processor)).train()
    batch = AddressCLIPCollator.from_config(processor, model.config)(tiny_rows(6, seed=3))
    assert "caption_input_ids" in batch and "utm" in batch  # all three losses
    plain_losses, plain_grads = _loss_and_grads(model, batch)

    calls = []
    handle = model.vision_model.encoder.layers[0].mlp.fc1.register_forward_hook(lambda *_: calls.append(1))
    model.activation_checkpointing_enable()  # what --gradient_checkpointing does (transformers 5's name)
    assert model.is_activation_checkpointing
    losses, grads = _loss_and_grads(model, batch)
    handle.remove()
    assert len(calls) == 2, "the checkpointed layer must run again in the backward pass"
    for name, value in plain_losses.items():
        assert math.isclose(losses[name], value, rel_tol=1e-6, abs_tol=1e-7), name
    assert grads.keys() == plain_grads.keys() and len(grads) == len(list(model.parameters()))
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.slow
def test_gradient_checkpointing_flag_trains_identically_with_the_global_gather(pitts_dir, tmp_path):
    """``--gradient_checkpointing`` under 2 gloo processes (every loss on the global batch): the same run."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    runs = {}
    for name, flags in (("plain", []), ("checkpointed", ["--gradient_checkpointing"])):
        output = tmp_path / name
        args = ["tiny", "--dataset_name", str(pitts_dir), "--output_dir", str(output), "--max_steps", "2",
                "--logging_steps", "1", "--per_device_train_batch_size", "4", "--save_strategy", "steps",
                "--save_steps", "2", "--abstain_coverage", "0", *flags]  # fmt: skip
        command = accelerate_launch(ROOT / "train.py", *args, port=29547)
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert "| world_size | 2 |" in (output / "README.md").read_text()
        state = json.loads((output / "checkpoint-2" / "trainer_state.json").read_text())
        saved_args = torch.load(output / "checkpoint-2" / "training_args.bin", weights_only=False)
        assert saved_args.activation_checkpointing is bool(flags)
        runs[name] = ([h for h in state["log_history"] if "loss_address" in h], load_file(output / "model.safetensors"))
    (plain_log, plain_weights), (log, weights) = runs["plain"], runs["checkpointed"]
    assert len(log) == len(plain_log) == 2
    for entry, reference in zip(log, plain_log):
        for key in ("loss", "loss_address", "loss_caption", "loss_geography", "grad_norm"):
            assert math.isclose(entry[key], reference[key], rel_tol=1e-5), (key, entry, reference)
    for name, tensor in weights.items():
        torch.testing.assert_close(tensor, plain_weights[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.slow
def test_gradient_checkpointing_benchmark_tiny_runs_each_variant_in_its_own_process(tmp_path):
    out = tmp_path / "gc.json"
    command = [sys.executable, "-m", "benchmarks.gradient_checkpointing", "--tiny", "--json", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [(r["model"], r["checkpointing"]) for r in result["rows"]] == [
        ("AddressCLIP", False), ("AddressCLIP", True), ("CLIP", False), ("CLIP", True)
    ]  # fmt: skip
    assert len({r["pid"] for r in result["rows"]}) == 4 and os.getpid() not in {r["pid"] for r in result["rows"]}
    for row in result["rows"]:
        assert row["samples_per_s"] > 0 and row["cpu_s_per_step"] > 0 and row["peak_rss_mb"] >= row["setup_rss_mb"] > 0
    for model in ("AddressCLIP", "CLIP"):
        assert result["same_loss"][model] and result["same_grad_norm"][model], result
    assert "| model | gradient checkpointing |" in proc.stdout


# ----------------------------------------------------------------------------- train.py pitts_ial end to end
FRESH = textwrap.dedent(
    """
    import json, sys
    sys.modules["modeling_addressclip"] = None  # the saved directory's own code, as for a Hub user
    from transformers import pipeline
    localizer = pipeline("image-address-localization", model=sys.argv[1], trust_remote_code=True)
    result = localizer(sys.argv[2], top_k=3, min_score=0)
    rows = localizer.model.text_model.embeddings.token_embedding.num_embeddings
    print(json.dumps({"result": result, "vocab": len(localizer.tokenizer), "rows": rows}))
    """
)


def _top3(result: list[dict]) -> list[str]:
    return [row["address"] for row in result]


@pytest.mark.slow
def test_pitts_ial_recipe_end_to_end_from_a_hub_layout_clip(clip_dir, pitts_dir, tmp_path):
    """train.py pitts_ial on CPU: trains, evaluates SSA/SA, saves; the directory localizes in a fresh process
    (remote code) and through the CLI; --zero_shot_eval evaluates the untouched CLIP."""
    output = tmp_path / "pitts"
    short = ["--max_steps", "2", "--per_device_train_batch_size", "2", "--max_eval_samples", "4", "--eval_strategy",
             "no", "--save_strategy", "no", "--dataloader_num_workers", "0", "--logging_steps", "1"]  # fmt: skip
    argv = ["pitts_ial", "--model_name_or_path", str(clip_dir), "--dataset_name", str(pitts_dir), *short]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), HF_HUB_OFFLINE="1")
    command = [sys.executable, "train.py", *argv, "--output_dir", str(output)]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "AddressCLIP run summary" in proc.stdout and "loss_geography" in proc.stdout + proc.stderr
    metrics = json.loads((output / "eval_results.json").read_text())
    assert metrics["eval_samples"] == 4 and {"eval_ssa@1", "eval_sa@1"} <= set(metrics)
    assert (output / "training_curves.png").is_file() and "Pitts" in (output / "README.md").read_text()

    model = AutoModel.from_pretrained(output).eval()
    processor = AutoProcessor.from_pretrained(output)
    assert len(processor.tokenizer) == model.text_model.embeddings.token_embedding.num_embeddings == VOCAB_SIZE
    assert set(model.address_bank) == {form for _, form in RELEASE_ADDRESSES}
    query = datasets.load_dataset(str(pitts_dir), split="query").cast_column("image", datasets.Image(decode=False))
    photo = tmp_path / "query.jpg"
    photo.write_bytes(query[0]["image"]["bytes"])
    from modeling_addressclip import image_pixels

    pixel_values = image_pixels(processor, [str(photo)])
    assert tuple(pixel_values.shape) == (1, 3, 224, 224)
    from PIL import Image

    assert Image.open(photo).size == PITTS_SIZE
    scores, indices = model.localize(pixel_values, top_k=3)
    expected = [model.address_bank[i] for i in indices[0].tolist()]

    fresh = subprocess.run([sys.executable, "-c", FRESH, str(output), str(photo)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    reloaded = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert reloaded["vocab"] == reloaded["rows"] == VOCAB_SIZE
    assert _top3(reloaded["result"]) == expected
    for row, score in zip(reloaded["result"], scores[0].tolist()):
        assert math.isclose(row["similarity"], score, abs_tol=1e-5)

    cli = [sys.executable, "-m", "addressclip_train.cli", "predict", "--model", str(output), "--json", "--top-k", "3"]
    predicted = subprocess.run([*cli, "--min-score", "0", str(photo)], cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=300)  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert _top3(json.loads(predicted.stdout)[0]["predictions"]) == expected

    zero_shot = tmp_path / "zero-shot"
    metrics = train.main([*argv, "--zero_shot_eval", "--output_dir", str(zero_shot)])
    assert metrics["eval_samples"] == 4 and "eval_ssa@1" in metrics
    assert json.loads((zero_shot / "config.json").read_text())["address_template"] == DEFAULT_ADDRESS_TEMPLATE
    untouched = load_file(str(zero_shot / "model.safetensors"))
    for name, tensor in load_file(str(clip_dir / "model.safetensors")).items():
        assert torch.equal(untouched[name], tensor), name
