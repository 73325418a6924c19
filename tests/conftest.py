"""Test-wide settings: nothing may touch the network, threads stay predictable."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_demo_dir(tmp_path_factory):
    """A demo-city dataset directory with only 6 addresses (built once per test session)."""
    from dataset_scripts.demo_city import build_demo_city

    output = tmp_path_factory.mktemp("demo") / "tiny_demo_city"
    build_demo_city(output, seed=0, image_size=64, max_addresses=6)
    return output


@pytest.fixture(scope="module")
def processor():
    """The tiny CLIP processor of ``fixtures.tiny_models`` (a test module may define its own)."""
    from fixtures.tiny_models import tiny_processor

    return tiny_processor()


@pytest.fixture()
def model(processor):
    """A fresh, seeded tiny ``AddressCLIPModel`` in eval mode."""
    import torch

    from fixtures.tiny_models import tiny_config
    from modeling_addressclip import AddressCLIPModel

    torch.manual_seed(0)
    return AddressCLIPModel(tiny_config(processor)).eval()
