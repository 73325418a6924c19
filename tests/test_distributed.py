"""Two processes give the global-batch loss: 2 x B under accelerate equals 1 x 2B in one process.

Checked for AddressCLIP (full fine-tuning) and for the prompt-learning baselines CoOp and CoCoOp (whose
image-conditioned texts are gathered as token ids and whose per-image logit rows are gathered with gradient).
"""

import json
import os
import subprocess

import pytest

from fixtures import ROOT
from fixtures.tiny_models import accelerate_launch


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_global_batch(tmp_path):
    out = tmp_path / "result.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    command = accelerate_launch("tests.scripts.global_batch", str(out), "coop", "cocoop", port=29517, module=True)
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["world_size"] == 2, f"not distributed: {result} (stderr: {proc.stderr[-1000:]})"
    assert set(result["methods"]) == {"none", "coop", "cocoop"}
    for method, found in result["methods"].items():
        assert found["max_abs_loss_diff"] <= 1e-6, (method, found)
        assert found["rel_grad_diff"] <= 1e-5, (method, found)
    assert result["methods"]["coop"]["trainable"] == 1 and result["methods"]["cocoop"]["trainable"] == 5
