"""AddressCLIPModel against transformers' own model test suite: it passes every check plain CLIPModel passes.

The suite is ``ModelTesterMixin`` from ``tests/test_modeling_common.py`` of the source distribution of the
*installed* transformers (downloaded from PyPI with ``pip download --no-binary :all:`` into
``$ADDRESSCLIP_CACHE`` once per version, see :mod:`fixtures.transformers_suite`), run in one pytest subprocess
on ``CLIPModelTest`` (plain CLIPModel) and on ``AddressCLIPModelTest`` (the same test class with
AddressCLIPModel / AddressCLIPConfig substituted, :mod:`fixtures.transformers_clip_tester`). The sdist ships
no ``tests/models/clip/``, so the CLIP model tester is ours; whatever the common checks do with it, they do
to both models alike.

Every one of the suite's 162 test cases runs for each model, none selected away: both classes together take
about 50 s on one CPU thread of a 2-core machine, 90 s when it is busy (plus, once per transformers version,
about 40 s to download the 10 MB sdist and ``pip install --target`` ``parameterized``), so no subset rule is
needed. It is marked slow because it runs a second pytest for about a minute; the last test here checks the
same three findings directly in a second, and is not slow. A failed download fails the test with pip's message:
nothing here is skipped for lack of the network. With transformers 5.24.0 both models get the same outcome in
every test case (98 passed, 64 skipped: GPU-only, flash-attention, RoPE, MoE, resizing, ...); run
``python -m fixtures.transformers_suite --list`` for the table.
"""

import inspect
from fnmatch import fnmatch

import pytest
import torch
from transformers import CLIPModel

from fixtures.tiny_models import tiny_config
from fixtures.transformers_suite import TRANSFORMERS_VERSION, regressions, run_suite, suite_root, summary
from modeling_addressclip import AddressCLIPModel

# The three places AddressCLIPModel used to part from CLIPModel (positional arguments, the text tower's
# hidden states and position_ids, the kwargs annotation the suite reads): each must run, and pass, for both.
MUST_PASS = (
    "test_model",
    "test_can_capture_specific_layers_hidden_states",
    "test_eager_matches_sdpa_inference_*_output_attentions",
)
MIN_CLIP_PASSES = 80  # a sanity floor: the suite ran, and found CLIPModel healthy (98 pass in 5.24.0)


@pytest.mark.slow
def test_addressclip_passes_every_check_of_transformers_suite_that_clipmodel_passes(tmp_path):
    suite_run = run_suite(suite_root(), tmp_path / "report.xml")  # suite_root raises, with pip's output, offline
    print(summary(suite_run))  # the counts and the wall time, shown with -s or -rA
    clip, ours = suite_run.outcomes.get("CLIPModelTest", {}), suite_run.outcomes.get("AddressCLIPModelTest", {})
    assert suite_run.counts("CLIPModelTest")["passed"] >= MIN_CLIP_PASSES, (
        f"transformers {TRANSFORMERS_VERSION}'s suite did not run as expected on plain CLIPModel:\n"
        f"{summary(suite_run)}\n{suite_run.output}"
    )
    assert set(ours) == set(clip), "both classes must run the same test cases"
    assert not regressions(suite_run), summary(suite_run)
    for pattern in MUST_PASS:
        names = [name for name in clip if fnmatch(name, pattern)]
        assert names, f"the suite has no test {pattern}"
        for name in names:
            assert clip[name].status == ours[name].status == "passed", (name, clip[name], ours[name])


def test_forward_keeps_clips_order_and_passes_clips_keywords_to_both_towers():
    """The suite's three findings, checked in a second without it (``-m "not slow"`` runs this one too)."""
    parameters = list(inspect.signature(AddressCLIPModel.forward).parameters.values())
    clip_names = list(inspect.signature(CLIPModel.forward).parameters)[:-1]  # all but **kwargs
    assert [p.name for p in parameters][: len(clip_names)] == clip_names
    assert [p.name for p in parameters][len(clip_names) :] == [
        "caption_input_ids",
        "caption_attention_mask",
        "utm",
        "kwargs",
    ]
    assert "output_attentions" in parameters[-1].annotation.__args__[0].__annotations__  # what the suite reads

    torch.manual_seed(0)
    model = AddressCLIPModel(tiny_config()).eval()
    clip = CLIPModel(model.config).eval()
    clip.load_state_dict(model.state_dict())
    for each in (model, clip):
        each.set_attn_implementation("eager")  # sdpa returns no attention weights
    input_ids = torch.randint(3, 100, (3, 6))
    attention_mask = torch.ones_like(input_ids)
    pixel_values = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        ours = model(input_ids, pixel_values, attention_mask, output_hidden_states=True, output_attentions=True)
        theirs = clip(input_ids, pixel_values, attention_mask)
        shifted = model(input_ids, pixel_values, attention_mask, position_ids=torch.arange(6).flip(0)[None])
        as_tuple = model(input_ids, pixel_values, attention_mask, return_dict=False)
    torch.testing.assert_close(ours.logits_per_image, theirs.logits_per_image)
    for tower in (ours.text_model_output, ours.vision_model_output):
        assert len(tower.hidden_states) == 3 and len(tower.attentions) == 2  # embeddings + 2 layers
    assert not torch.allclose(shifted.text_embeds, ours.text_embeds)  # position_ids reach the text tower
    torch.testing.assert_close(shifted.image_embeds, ours.image_embeds)
    assert ours.loss is None and isinstance(as_tuple, tuple)
