"""AddressCLIPModel against transformers' own model test suite: it passes every check plain CLIPModel passes.

The suite is ``ModelTesterMixin`` from ``tests/test_modeling_common.py`` of the source distribution of the
*installed* transformers (downloaded from PyPI with ``pip download --no-binary :all:`` into
``$ADDRESSCLIP_CACHE`` once per version, see :mod:`fixtures.transformers_suite`), run in one pytest subprocess
on ``CLIPModelTest`` (plain CLIPModel) and on ``AddressCLIPModelTest`` (the same test class with
AddressCLIPModel / AddressCLIPConfig substituted, :mod:`fixtures.transformers_clip_tester`). The sdist ships
no ``tests/models/clip/``, so the CLIP model tester is ours; whatever the common checks do with it, they do
to both models alike.

Every one of the suite's 162 test cases runs, none selected away: the whole class takes under a minute on
one CPU thread (both models, about 50 s on the CI machine, plus a one-time download of about 15 s), so no
subset rule is needed. It is marked slow because it starts a second interpreter for a minute. A failed
download fails the test with pip's message: nothing here is skipped for lack of the network.
"""

from fnmatch import fnmatch

import pytest

from fixtures.transformers_suite import TRANSFORMERS_VERSION, regressions, run_suite, suite_root, summary

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
