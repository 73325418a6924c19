"""Each loss equals an independent float64 reference written from the paper's equations."""

import math

import numpy as np
import pytest
import torch

from modeling_addressclip.losses import (
    gather_with_grad,
    geography_distance_matrix,
    geography_matching_loss,
    image_text_contrastive_loss,
)


def reference_infonce(v: np.ndarray, t: np.ndarray, tau: float) -> float:
    """Eq. 1/2 written out term by term with Python loops."""
    n = len(v)
    total = 0.0
    for i in range(n):
        rows = [math.exp(v[i] @ t[j] / tau) for j in range(n)]
        cols = [math.exp(t[i] @ v[k] / tau) for k in range(n)]
        total += math.log(rows[i] / sum(rows)) + math.log(cols[i] / sum(cols))
    return -total / (2 * n)


def reference_geography(v: np.ndarray, utm: np.ndarray, target: str) -> float:
    """Eq. 3-5 with loops: min-max per axis (zero range -> 0), L1 distance, cosine similarity, MSE."""
    n = len(v)
    u = np.zeros_like(utm)
    for axis in range(2):
        low, high = utm[:, axis].min(), utm[:, axis].max()
        if high > low:
            u[:, axis] = (utm[:, axis] - low) / (high - low)
    total = 0.0
    for i in range(n):
        for j in range(n):
            d_u = abs(u[i, 0] - u[j, 0]) + abs(u[i, 1] - u[j, 1])
            d_v = v[i] @ v[j] / (np.linalg.norm(v[i]) * np.linalg.norm(v[j]))
            goal = 1.0 - d_u if target == "similarity" else d_u
            total += (d_v - goal) ** 2
    return total / n**2


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("n", [1, 2, 7])
def test_image_text_contrastive_loss_equals_reference(n):
    g = torch.Generator().manual_seed(n)
    v = _unit(torch.randn(n, 8, generator=g, dtype=torch.float64))
    t = _unit(torch.randn(n, 8, generator=g, dtype=torch.float64))
    scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64)
    got = image_text_contrastive_loss(v, t, scale).item()
    assert got == pytest.approx(reference_infonce(v.numpy(), t.numpy(), 0.07), rel=1e-10, abs=1e-12)


def test_batch_of_one_has_zero_contrastive_loss():
    v = _unit(torch.randn(1, 4, dtype=torch.float64))
    assert image_text_contrastive_loss(v, v, torch.tensor(2.0, dtype=torch.float64)).item() == pytest.approx(0.0)


@pytest.mark.parametrize("target", ["similarity", "distance"])
@pytest.mark.parametrize("n", [1, 3, 9])
def test_geography_loss_equals_reference(n, target):
    g = torch.Generator().manual_seed(10 + n)
    v = torch.randn(n, 6, generator=g, dtype=torch.float64)
    utm = torch.stack([385_000 + 900 * torch.rand(n, generator=g), 6_671_000 + 700 * torch.rand(n, generator=g)], 1)
    got = geography_matching_loss(v, utm.double(), target).item()
    assert got == pytest.approx(reference_geography(v.numpy(), utm.double().numpy(), target), rel=1e-10, abs=1e-12)


def test_geography_similarity_target_pulls_neighbours_together():
    """Two images at one place and one far away: the loss prefers the near pair to be the similar one."""
    utm = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1000.0, 1000.0]], dtype=torch.float64)
    near_alike = _unit(torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0]], dtype=torch.float64))
    far_alike = _unit(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.01]], dtype=torch.float64))
    assert geography_matching_loss(near_alike, utm) < geography_matching_loss(far_alike, utm)


def test_distance_matrix_range_and_constant_axis():
    utm = torch.tensor([[5.0, 7.0], [6.0, 7.0], [8.0, 7.0]], dtype=torch.float64)  # north constant
    d = geography_distance_matrix(utm)
    assert torch.all(torch.isfinite(d))
    assert d.max().item() == pytest.approx(1.0)  # only east contributes, range 0..1
    assert torch.allclose(d, d.t())


@pytest.mark.parametrize(
    "utm",
    [
        [[3.0, 4.0], [3.0, 4.0], [3.0, 4.0]],  # all coordinates equal
        [[3.0, 4.0], [3.0, 9.0], [3.0, 1.0]],  # east constant
    ],
)
def test_geography_loss_degenerate_coordinates_are_finite(utm):
    v = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    loss = geography_matching_loss(v, torch.tensor(utm, dtype=torch.float64))
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(v.grad))


def test_geography_loss_batch_of_one_is_zero():
    v = torch.randn(1, 4, dtype=torch.float64)
    assert geography_matching_loss(v, torch.tensor([[1.0, 2.0]], dtype=torch.float64)).item() == pytest.approx(0.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_coordinates_raise_naming_the_row(bad):
    utm = torch.tensor([[1.0, 2.0], [3.0, bad], [5.0, 6.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"non-finite.*\[1\]"):
        geography_matching_loss(torch.randn(3, 4, dtype=torch.float64), utm)


def test_geography_loss_shape_errors():
    with pytest.raises(ValueError, match="shape"):
        geography_matching_loss(torch.randn(3, 4), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="rows"):
        geography_matching_loss(torch.randn(2, 4), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="target"):
        geography_matching_loss(torch.randn(3, 4), torch.zeros(3, 2), target="nearness")


def test_gather_is_identity_without_process_group():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
