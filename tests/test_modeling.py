"""AddressCLIPModel: CLIP checkpoints load into it, the forward contract, the address bank."""

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoConfig, AutoModel, AutoModelForZeroShotImageClassification, CLIPModel

from fixtures.tiny_models import ADDRESSES, tiny_clip_config, tiny_config, tiny_processor, tiny_rows
from modeling_addressclip import AddressCLIPCollator, AddressCLIPConfig, AddressCLIPModel


@pytest.fixture()
def batch(processor, model):
    return AddressCLIPCollator.from_config(processor, model.config)(tiny_rows(6, seed=3))


def test_plain_clip_checkpoint_loads_without_missing_keys_and_same_embeddings(tmp_path, processor, batch):
    torch.manual_seed(1)
    clip = CLIPModel(tiny_clip_config(processor)).eval()
    clip.save_pretrained(tmp_path)
    model, info = AddressCLIPModel.from_clip_pretrained(tmp_path, output_loading_info=True, geography_loss_weight=0.5)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert model.config.model_type == "addressclip" and model.config.geography_loss_weight == 0.5
    model.eval()
    with torch.no_grad():
        ours = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values=batch["pixel_values"]
        )
        theirs = clip(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values=batch["pixel_values"]
        )
        for name, kwargs in [
            ("get_image_features", dict(pixel_values=batch["pixel_values"])),
            ("get_text_features", dict(input_ids=batch["input_ids"])),
        ]:
            assert torch.equal(
                getattr(model, name)(**kwargs).pooler_output, getattr(clip, name)(**kwargs).pooler_output
            )
    torch.testing.assert_close(ours.image_embeds, theirs.image_embeds, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours.text_embeds, theirs.text_embeds, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours.logits_per_image, theirs.logits_per_image)


def test_loss_is_weighted_sum_of_the_three_parts(processor, batch):
    torch.manual_seed(0)
    model = AddressCLIPModel(
        tiny_config(processor, address_loss_weight=0.7, caption_loss_weight=0.3, geography_loss_weight=2.0)
    )
    out = model(**batch)
    expected = 0.7 * out.loss_address + 0.3 * out.loss_caption + 2.0 * out.loss_geography
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert model.logit_scale.grad is not None


def test_parts_without_inputs_are_skipped(model, batch):
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        pixel_values=batch["pixel_values"],
        return_loss=True,
    )
    assert out.loss_caption is None and out.loss_geography is None
    torch.testing.assert_close(out.loss, model.config.address_loss_weight * out.loss_address)
    assert model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"]).loss is None


def test_collator_drops_caption_ids_when_beta_is_zero(processor):
    config = tiny_config(processor, caption_loss_weight=0.0)
    batch = AddressCLIPCollator.from_config(processor, config)(tiny_rows(3))
    assert "caption_input_ids" not in batch
    assert AddressCLIPModel(config)(**batch).loss_caption is None


def test_geography_target_distance_is_selectable(processor, batch):
    torch.manual_seed(0)
    literal = AddressCLIPModel(tiny_config(processor, geography_target="distance"))(**batch).loss_geography
    torch.manual_seed(0)
    ours = AddressCLIPModel(tiny_config(processor))(**batch).loss_geography
    assert not torch.isclose(literal, ours)
    with pytest.raises(StrictDataclassClassValidationError, match="geography_target must be one of"):
        tiny_config(processor, geography_target="closeness")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.update(utm=torch.zeros(6, 3)), "utm must have shape"),
        (lambda b: b.update(utm=torch.zeros(5, 2)), "utm has batch size 5"),
        (lambda b: b.pop("caption_attention_mask"), "caption_input_ids were given without caption_attention_mask"),
        (
            lambda b: b.update(input_ids=b["input_ids"][:4], attention_mask=b["attention_mask"][:4]),
            "input_ids has batch size 4 but pixel_values has 6",
        ),
        (
            lambda b: b.update(
                caption_input_ids=b["caption_input_ids"][:2], caption_attention_mask=b["caption_attention_mask"][:2]
            ),
            "caption_input_ids has batch size 2",
        ),
        (lambda b: b.update(attention_mask=b["attention_mask"][:, :3]), "attention_mask shape"),
        (lambda b: b.update(pixel_values=b["pixel_values"][0]), "pixel_values must have 4 dimensions"),
        (lambda b: b.pop("input_ids"), "input_ids"),
    ],
)
def test_wrong_shapes_name_the_input(model, batch, change, message):
    change(batch)
    with pytest.raises(ValueError, match=message):
        model(**batch)


def test_tuple_output_and_auto_classes(model, batch, tmp_path):
    loss = model(**batch, return_dict=False)[0]
    assert loss.ndim == 0
    assert AutoConfig.for_model("addressclip").__class__ is AddressCLIPConfig
    model.save_pretrained(tmp_path)
    assert isinstance(AutoModel.from_pretrained(tmp_path), AddressCLIPModel)
    assert isinstance(AutoModelForZeroShotImageClassification.from_pretrained(tmp_path), AddressCLIPModel)


def test_address_bank_localize_equals_brute_force_and_survives_save(model, processor, batch, tmp_path):
    model.set_address_bank(ADDRESSES, processor)
    assert model.address_bank == ADDRESSES
    scores, indices = model.localize(batch["pixel_values"], top_k=3)
    with torch.no_grad():
        prompts = [model.config.format_address_prompt(a) for a in ADDRESSES]
        tokens = processor.tokenizer(prompts, padding=True, return_tensors="pt")
        full = model(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], pixel_values=batch["pixel_values"]
        )
        brute = full.image_embeds @ full.text_embeds.t()
    expected_scores, expected_indices = brute.topk(3, dim=-1)
    torch.testing.assert_close(scores, expected_scores, rtol=1e-5, atol=1e-6)
    assert torch.equal(indices, expected_indices)

    model.save_pretrained(tmp_path)
    reloaded = AddressCLIPModel.from_pretrained(tmp_path).eval()
    assert reloaded.address_bank == ADDRESSES
    torch.testing.assert_close(reloaded.address_bank_embeds, model.address_bank_embeds)
    torch.testing.assert_close(reloaded.localize(batch["pixel_values"], top_k=3, processor=processor)[0], scores)
    assert model.localize(batch["pixel_values"], top_k=100)[0].shape == (6, len(ADDRESSES))


def test_empty_or_missing_bank_raises(model, processor, batch):
    with pytest.raises(ValueError, match="no address bank"):
        model.localize(batch["pixel_values"])
    with pytest.raises(ValueError, match="at least one address"):
        model.set_address_bank([], processor)
    with pytest.raises(ValueError, match="repeats"):
        model.set_address_bank([ADDRESSES[0], ADDRESSES[1], ADDRESSES[0]], processor)
    with pytest.raises(ValueError, match="unparseable address 'Mannerheimintie'"):
        model.set_address_bank(["Mannerheimintie"], processor)


def test_bank_from_another_template_or_tokenizer_raises(model, processor, batch):
    model.set_address_bank(ADDRESSES, processor)
    other = tiny_processor(image_size=32).__class__(
        image_processor=processor.image_processor,
        tokenizer=type(processor.tokenizer)(vocab={"<|startoftext|>": 0, "<|endoftext|>": 1}, merges=[]),
    )
    with pytest.raises(ValueError, match="different tokenizer or address_template"):
        model.localize(batch["pixel_values"], processor=other)
    model.config.address_template = "Photo taken on {address}"
    with pytest.raises(ValueError, match="different tokenizer or address_template"):
        model.localize(batch["pixel_values"])
    model.set_address_bank(ADDRESSES, processor)  # rebuilt with the new template: usable again
    assert model.localize(batch["pixel_values"], top_k=1)[1].shape == (6, 1)
