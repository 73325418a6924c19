"""Tab. 2's prompt-learning baselines (CoOp, CoCoOp, MaPLe) on a frozen CLIP, through the model's one encode path.

References are CLIP's own forward: the learned context enters as extra vocabulary rows (so ``get_text_features``
itself inserts it after SOS) and MaPLe's prompts through hooks on CLIP's own modules.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassClassValidationError
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModel, AutoProcessor, CLIPModel

from addressclip_train import train
from addressclip_train.run import ModelArguments, build_model
from fixtures.tiny_models import ADDRESSES, tiny_clip_config, tiny_config, tiny_rows
from modeling_addressclip import AddressCLIPCollator, AddressCLIPModel
from modeling_addressclip.losses import symmetric_contrastive_loss

METHODS = ("coop", "cocoop", "maple")
NEW_ADDRESS = "Fredrikinkatu between Bulevardi and Uudenmaankatu, Punavuori"


def prompt_model(processor, method, seed=0, **overrides) -> AddressCLIPModel:
    torch.manual_seed(seed)
    model = AddressCLIPModel(tiny_config(processor, prompt_learning=method, **overrides))
    model.initialize_prompts(processor.tokenizer)
    with torch.no_grad():  # off the init: the tests must see the prompts, not "a photo of a" as plain tokens
        for parameter in model.prompt_parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


def batch_of(processor, model, n=4, seed=3):
    return AddressCLIPCollator.from_config(processor, model.config)(tiny_rows(n, seed=seed))


# ----------------------------------------------------------------------------- references: CLIP's own forward
def reference_text(model, input_ids, attention_mask, ctx, deep=()):
    """Normalized CLIP text features with ``ctx`` (M, D) as M new vocabulary rows right after SOS; MaPLe's
    ``deep[k - 1]`` overwrites those positions at layer k (hooks on a copy of the model)."""
    ref = copy.deepcopy(model)
    embedding = ref.text_model.embeddings.token_embedding
    vocab, context, rows = embedding.num_embeddings, ctx.shape[0], input_ids.shape[0]
    rows_plus_ctx = torch.cat([embedding.weight, ctx]).detach()
    ref.text_model.embeddings.token_embedding = nn.Embedding.from_pretrained(rows_plus_ctx)
    ids = torch.cat([input_ids[:, :1], torch.arange(vocab, vocab + context).expand(rows, -1), input_ids[:, 1:]], 1)
    mask = torch.cat([attention_mask[:, :1], torch.ones(rows, context, dtype=torch.long), attention_mask[:, 1:]], 1)
    for k, prompt in enumerate(deep, start=1):
        ref.text_model.encoder.layers[k].register_forward_pre_hook(_replace(slice(1, 1 + context), prompt))
    return F.normalize(CLIPModel.get_text_features(ref, input_ids=ids, attention_mask=mask).pooler_output, dim=-1)


def reference_image(model, pixel_values, prompts=()):
    """Normalized CLIP image features; MaPLe's ``prompts[0]`` appended to the embeddings (before pre_layrnorm),
    ``prompts[k]`` overwriting the last M positions at layer k."""
    ref = copy.deepcopy(model)
    if prompts:
        tokens = prompts[0].detach()
        ref.vision_model.embeddings.register_forward_hook(
            lambda module, args, out: torch.cat([out, tokens.expand(out.shape[0], -1, -1)], dim=1)
        )
    for k, prompt in enumerate(prompts[1:], start=1):
        layer = ref.vision_model.encoder.layers[k]
        layer.register_forward_pre_hook(_replace(slice(-prompt.shape[0], None), prompt))
    return F.normalize(CLIPModel.get_image_features(ref, pixel_values=pixel_values).pooler_output, dim=-1)


def _replace(positions, prompt):
    def hook(module, args):
        hidden = args[0].clone()
        hidden[:, positions] = prompt.detach()
        return (hidden, *args[1:])

    return hook


def class_tokens(processor, model, addresses):
    prompts = [model.config.format_address_prompt(a) for a in addresses]
    tokens = processor.tokenizer(prompts, padding=True, return_tensors="pt")
    return tokens["input_ids"], tokens["attention_mask"]


def maple_prompts(model):
    learner = model.prompt_learner
    return [learner.ctx, *learner.deep_ctx], learner.vision_prompts()


# ----------------------------------------------------------------------------- config
def test_config_resolves_each_papers_defaults_and_rejects_nonsense(processor):
    # M and the init text of each paper; MaPLe's J = 9 clipped to the tiny encoders' 2 layers.
    expected = {"coop": (16, 1, None), "cocoop": (4, 1, "a photo of a"), "maple": (2, 2, "a photo of a")}
    for method, resolved in expected.items():
        config = tiny_config(processor, prompt_learning=method)
        assert (config.prompt_context_tokens, config.prompt_layers, config.prompt_init_text) == resolved
        assert config.format_address_prompt(ADDRESSES[0]) == ADDRESSES[0] + "."
    assert tiny_config(processor, prompt_learning="maple", prompt_depth=1).prompt_layers == 1
    assert tiny_config(processor).format_address_prompt("X") == "A street view photo at X."
    for fields, message in [
        (dict(prompt_learning="vpt"), "prompt_learning must be None or one of"),
        (dict(prompt_learning="coop", prompt_context_length=0), "prompt_context_length must be >= 1"),
        (dict(prompt_learning="maple", prompt_depth=0), "prompt_depth must be >= 1"),
        (dict(prompt_learning="coop", prompt_depth=3), "prompt_depth is MaPLe's"),
        (dict(prompt_context_length=4), "set but prompt_learning is None"),
        (dict(prompt_learning="coop", prompt_context_length=62), "leaves no room for an address"),
        (dict(prompt_learning="cocoop", prompt_init=" "), "prompt_init must be a non-empty text"),
    ]:
        with pytest.raises(StrictDataclassClassValidationError, match=message):
            tiny_config(processor, **fields)


def test_without_prompt_learning_nothing_changes_bit_for_bit(processor):
    torch.manual_seed(0)
    model = AddressCLIPModel(tiny_config(processor)).eval()
    assert model.prompt_learner is None and model.prompt_parameters() == []
    assert all(p.requires_grad for p in model.parameters()) and model.initialize_prompts(processor.tokenizer) == 0
    ids, mask = class_tokens(processor, model, ADDRESSES)
    with torch.no_grad():
        clip = CLIPModel.get_text_features(model, input_ids=ids, attention_mask=mask).pooler_output
        ours, _ = model._encode_text(ids, mask)
        assert torch.equal(ours, F.normalize(clip, dim=-1))
        assert torch.equal(model.embed_addresses(ADDRESSES, processor, batch_size=len(ADDRESSES)), ours)


# ----------------------------------------------------------------------------- training touches only the prompts
@pytest.mark.parametrize("method", METHODS)
def test_one_optimizer_step_changes_only_the_prompts(processor, method):
    model = prompt_model(processor, method).train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)  # every parameter offered
    out = model(**batch_of(processor, model))
    assert out.loss_caption is not None and out.loss_geography is not None
    out.loss.backward()
    optimizer.step()
    prompts = {name for name, _ in model.named_parameters() if name.startswith("prompt_learner.")}
    assert prompts == {name for name, p in model.named_parameters() if p.requires_grad}
    for name, parameter in model.named_parameters():
        if name in prompts:
            assert parameter.grad is not None and not torch.equal(parameter, before[name]), name
        else:
            assert parameter.grad is None and torch.equal(parameter, before[name]), name
    assert "logit_scale" not in prompts


# ----------------------------------------------------------------------------- the bank through the prompts
@pytest.mark.parametrize("method", ["coop", "maple"])
def test_the_bank_is_encoded_with_the_learned_prompts(processor, method):
    model = prompt_model(processor, method)
    pixels = batch_of(processor, model)["pixel_values"]
    model.set_address_bank(ADDRESSES, processor)
    ids, mask = class_tokens(processor, model, ADDRESSES)
    texts, images = ([model.prompt_learner.ctx], ()) if method == "coop" else maple_prompts(model)
    with torch.no_grad():
        bank = reference_text(model, ids, mask, texts[0], texts[1:])
        image = reference_image(model, pixels, images)
        torch.testing.assert_close(model.address_bank_embeds, bank, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.address_similarity(pixels), image @ bank.t(), rtol=1e-5, atol=1e-6)
        first = model.address_bank_embeds.clone()
        model.prompt_learner.ctx.add_(0.1)
        model.set_address_bank(ADDRESSES, processor)
        assert not torch.allclose(model.address_bank_embeds, first)


def test_cocoop_ranks_each_bank_text_under_each_images_own_prompt(processor):
    model = prompt_model(processor, "cocoop")
    batch = batch_of(processor, model)
    model.set_address_bank(ADDRESSES, processor)
    ids, mask = class_tokens(processor, model, ADDRESSES)
    learner = model.prompt_learner
    with torch.no_grad():
        images = reference_image(model, batch["pixel_values"])
        contexts = learner.ctx + learner.meta_net(images).unsqueeze(1)  # (B, M, D): ctx + pi(x)
        assert not torch.allclose(contexts[0], contexts[1])  # each image its own prompt
        expected = torch.stack(
            [images[i] @ reference_text(model, ids, mask, contexts[i]).t() for i in range(len(images))]
        )
        torch.testing.assert_close(model.address_similarity(batch["pixel_values"]), expected, rtol=1e-5, atol=1e-6)
        # The bank matrix kept beside the ids is the bank under pi = 0.
        torch.testing.assert_close(model.address_bank_embeds, reference_text(model, ids, mask, learner.ctx))
        first = model.address_similarity(batch["pixel_values"])
        learner.ctx.add_(0.1)
        assert not torch.allclose(model.address_similarity(batch["pixel_values"]), first)


def test_cocoop_loss_is_eq1_over_per_image_logits(processor):
    model = prompt_model(processor, "cocoop")
    batch = batch_of(processor, model)
    learner, scale = model.prompt_learner, model.logit_scale.exp()
    with torch.no_grad():
        out = model(**batch)
        images = reference_image(model, batch["pixel_values"])
        contexts = learner.ctx + learner.meta_net(images).unsqueeze(1)
        for ids, mask, loss in [
            (batch["input_ids"], batch["attention_mask"], out.loss_address),
            (batch["caption_input_ids"], batch["caption_attention_mask"], out.loss_caption),
        ]:
            logits = torch.stack(
                [scale * images[i] @ reference_text(model, ids, mask, contexts[i]).t() for i in range(4)]
            )
            torch.testing.assert_close(loss, symmetric_contrastive_loss(logits), rtol=1e-5, atol=1e-6)
            if loss is out.loss_address:
                torch.testing.assert_close(out.logits_per_image, logits, rtol=1e-5, atol=1e-5)
    assert out.text_embeds.shape == (4, 4, model.config.projection_dim)


def test_cocoop_ranks_rows_it_encoded_and_rejects_any_other_matrix(processor):
    model = prompt_model(processor, "cocoop")
    pixels = batch_of(processor, model)["pixel_values"]
    model.set_address_bank(ADDRESSES, processor)
    full = model.address_similarity(pixels)
    subset = model.address_bank_embeds[[4, 1]].clone()  # bank rows, as the pipeline's candidate subsets pass them
    torch.testing.assert_close(model.address_similarity(pixels, bank=subset), full[:, [4, 1]])
    new = model.embed_addresses([NEW_ADDRESS, ADDRESSES[2]], processor)  # a text outside the bank
    model.set_address_bank([NEW_ADDRESS], processor)
    torch.testing.assert_close(model.address_similarity(pixels, bank=new[:1]), model.address_similarity(pixels))
    with pytest.raises(ValueError, match=r"bank rows \[0, 1, 2\] are not addresses this CoCoOp model encoded"):
        model.address_similarity(pixels, bank=torch.randn(3, model.config.projection_dim))


# ----------------------------------------------------------------------------- MaPLe's prompts, layer by layer
def test_maple_replaces_the_prompt_positions_at_each_prompted_layer(processor):
    model = prompt_model(processor, "maple")
    batch = batch_of(processor, model)
    texts, images = maple_prompts(model)
    seen = {}
    for tower in ("text_model", "vision_model"):
        layer = getattr(model, tower).encoder.layers[1]
        layer.register_forward_pre_hook(lambda m, args, tower=tower: seen.__setitem__(tower, args[0].detach()))
    with torch.no_grad():
        model(**batch)
    context = model.config.prompt_context_tokens
    assert torch.equal(seen["text_model"][:, 1 : 1 + context], texts[1].expand(4, -1, -1).detach())
    assert torch.equal(seen["vision_model"][:, -context:], images[1].expand(4, -1, -1).detach())
    assert seen["vision_model"].shape[1] == (32 // 8) ** 2 + 1 + context


def test_maple_depth_one_prompts_the_inputs_only(processor):
    model = prompt_model(processor, "maple", prompt_depth=1)
    assert len(model.prompt_learner.deep_ctx) == 0 and len(model.prompt_learner.couplings) == 1
    batch = batch_of(processor, model)
    with torch.no_grad():
        image = reference_image(model, batch["pixel_values"], model.prompt_learner.vision_prompts())
        torch.testing.assert_close(model.embed_images(batch["pixel_values"]), image, rtol=1e-5, atol=1e-6)
        text = reference_text(model, batch["input_ids"], batch["attention_mask"], model.prompt_learner.ctx)
        torch.testing.assert_close(model(**batch).text_embeds, text, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- loading a CLIP into a prompt model
def test_a_plain_clip_loads_with_random_prompts_then_initialize_prompts(processor, tmp_path):
    torch.manual_seed(1)
    CLIPModel(tiny_clip_config(processor)).save_pretrained(tmp_path)
    embedding = None
    for method in METHODS:
        model, info = AddressCLIPModel.from_clip_pretrained(tmp_path, prompt_learning=method, output_loading_info=True)
        assert info["missing_keys"] == {n for n, _ in model.named_parameters() if n.startswith("prompt_learner.")}
        assert {n for n, p in model.named_parameters() if p.requires_grad} == info["missing_keys"]
        assert 0.01 < model.prompt_learner.ctx.std().item() < 0.04  # N(0, 0.02^2), not CLIP's init
        embedding = model.text_model.embeddings.token_embedding.weight
        ids = processor.tokenizer("a photo of a", add_special_tokens=False)["input_ids"]
        count = model.initialize_prompts(processor.tokenizer)
        context = model.config.prompt_context_tokens
        if method == "coop":  # CoOp's main setting stays random
            assert count == 0
        else:
            assert count == context and torch.equal(model.prompt_learner.ctx, embedding[ids[:context]])
    model = AddressCLIPModel.from_clip_pretrained(
        tmp_path, prompt_learning="coop", prompt_context_length=6, prompt_init="a photo of a"
    )
    assert model.initialize_prompts(processor.tokenizer) == 4
    assert torch.equal(model.prompt_learner.ctx[:4], embedding[ids]) and model.prompt_learner.ctx[4:].abs().max() < 1


def test_collator_follows_the_prompt_template_and_caption_without_address(processor):
    rows = tiny_rows(3)
    config = tiny_config(processor, prompt_learning="coop", caption_includes_address=False)
    batch = AddressCLIPCollator.from_config(processor, config)(rows)
    tokenizer = processor.tokenizer
    assert tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True) == tokenizer.decode(
        tokenizer(rows[0]["address"] + ".")["input_ids"], skip_special_tokens=True
    )
    captions = tokenizer([r["caption"] for r in rows], padding=True, return_tensors="pt")
    assert torch.equal(batch["caption_input_ids"], captions["input_ids"])


# ----------------------------------------------------------------------------- saved directories
FRESH = textwrap.dedent(
    """
    import json, sys, torch
    sys.modules["modeling_addressclip"] = None  # only the code saved with the model may be used
    from PIL import Image
    from transformers import AutoModel, pipeline
    image, out_path, new_address, *dirs = sys.argv[1:]
    result = {}
    for model_dir in dirs:
        batch = torch.load(model_dir + "/batch.pt")
        model = AutoModel.from_pretrained(model_dir, trust_remote_code=True).eval()
        assert "transformers_modules" in type(model).__module__
        with torch.no_grad():
            logits = model(**batch).logits_per_image
            scores, indices = model.localize(batch["pixel_values"], top_k=3)
        localizer = pipeline("image-address-localization", model=model_dir, trust_remote_code=True)
        bank = model.address_bank
        answers = localizer(Image.open(image), top_k=2)
        candidates = localizer(Image.open(image), candidate_addresses=[bank[3], new_address, bank[0]], top_k=3)
        trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
        result[model_dir] = dict(logits=logits.tolist(), scores=scores.tolist(), indices=indices.tolist(),
                                 answers=answers, candidates=candidates, trainable=trainable)
    json.dump(result, open(out_path, "w"))
    """
)


def test_saved_prompt_models_reload_localize_and_serve_the_pipeline(processor, tmp_path):
    close = functools.partial(torch.testing.assert_close, rtol=1e-5, atol=1e-5)
    rows = tiny_rows(3, seed=5)
    rows[0]["image"].save(tmp_path / "query.png")
    expected, dirs = {}, []
    for method in METHODS:
        model = prompt_model(processor, method)
        model.set_address_bank(ADDRESSES, processor)
        batch = batch_of(processor, model, n=3, seed=5)
        directory = tmp_path / method
        model.save_pretrained(directory)
        processor.save_pretrained(directory)
        torch.save(batch, directory / "batch.pt")
        saved = load_file(directory / "model.safetensors")
        for name, parameter in model.prompt_learner.named_parameters():
            assert torch.equal(saved[f"prompt_learner.{name}"], parameter), name
        reloaded = AutoModel.from_pretrained(directory).eval()
        assert reloaded.config.prompt_learning == method
        assert {n for n, p in reloaded.named_parameters() if p.requires_grad} == {
            f"prompt_learner.{n}" for n, _ in model.prompt_learner.named_parameters()
        }
        with torch.no_grad():
            logits, scores, indices = model(**batch).logits_per_image, *model.localize(batch["pixel_values"], 3)
            similarity = model.address_similarity(batch["pixel_values"][:1])
            candidates = model.embed_addresses([ADDRESSES[3], NEW_ADDRESS, ADDRESSES[0]], processor)
            candidate_similarity = model.address_similarity(batch["pixel_values"][:1], bank=candidates)[0]
            close(reloaded(**batch).logits_per_image, logits)
            again = reloaded.localize(batch["pixel_values"], 3)
        close(again[0], scores)
        assert torch.equal(again[1], indices)  # the same ranking, up to float rounding of the reloaded weights
        expected[str(directory)] = logits, scores, indices, similarity[0], candidate_similarity
        dirs.append(str(directory))

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    script = tmp_path / "fresh.py"
    script.write_text(FRESH)
    command = [sys.executable, str(script), str(tmp_path / "query.png"), str(tmp_path / "out.json"), NEW_ADDRESS]
    proc = subprocess.run([*command, *dirs], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())
    for directory, (logits, scores, indices, similarity, candidate_similarity) in expected.items():
        got = result[directory]
        close(torch.tensor(got["logits"]), logits)
        close(torch.tensor(got["scores"]), scores)
        assert got["indices"] == indices.tolist() and {n.split(".")[0] for n in got["trainable"]} == {"prompt_learner"}
        top = similarity.topk(2)
        assert [a["address"] for a in got["answers"]] == [ADDRESSES[i] for i in top.indices.tolist()]
        close(torch.tensor([a["similarity"] for a in got["answers"]]), top.values)
        by_text = {a["address"]: a["similarity"] for a in got["candidates"]}
        close(torch.tensor([by_text[t] for t in (ADDRESSES[3], NEW_ADDRESS, ADDRESSES[0])]), candidate_similarity)


# ----------------------------------------------------------------------------- train.py
def test_train_py_trains_cocoop_prompts_and_a_second_run_continues_them(tiny_demo_dir, tmp_path):
    def run(output, *extra):
        argv = ["tiny", "--dataset_name", str(tiny_demo_dir), "--output_dir", str(output), "--max_steps", "2"]
        return train.main([*argv, "--prompt_learning", "cocoop", *extra])

    first, second = tmp_path / "first", tmp_path / "second"
    run(first)
    run(second, "--model_name_or_path", str(first))
    before, after = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert before.keys() == after.keys()
    prompts = {name for name in before if name.startswith("prompt_learner.")}
    assert "prompt_learner.ctx" in prompts and "prompt_learner.meta_net.0.weight" in prompts
    for name in before.keys() - prompts - {"address_bank_embeds"}:
        assert torch.equal(before[name], after[name]), name  # CLIP frozen through the Trainer's steps
    assert any(not torch.equal(before[name], after[name]) for name in prompts)  # trained further
    loaded, _ = build_model(ModelArguments(model_name_or_path=str(first), prompt_learning="cocoop"), None)
    assert torch.equal(loaded.prompt_learner.ctx, before["prompt_learner.ctx"])  # continued, not re-initialized
    reloaded = AutoModel.from_pretrained(second).eval()
    assert reloaded.config.prompt_learning == "cocoop" and reloaded.image_conditioned
    assert torch.equal(reloaded.prompt_learner.ctx, after["prompt_learner.ctx"])
    assert "| method | CoCoOp |" in (second / "README.md").read_text()
    pixels = AutoProcessor.from_pretrained(second)(images=[tiny_rows(1)[0]["image"]], return_tensors="pt")
    scores, indices = reloaded.localize(pixels["pixel_values"], top_k=2)
    assert scores.shape == (1, 2) and len({reloaded.address_bank[i] for i in indices[0].tolist()}) == 2
