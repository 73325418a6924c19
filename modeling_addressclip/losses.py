"""AddressCLIP's losses (paper §4) as pure functions of tensors, plus the exact global-batch gather.

Every function here is testable without a model. Under ``torch.distributed`` the model gathers
embeddings and UTM coordinates with :func:`gather_with_grad` first, so each process computes the
loss of the *global* batch and, after the usual data-parallel gradient averaging, gets exactly
the gradients of one process holding the whole batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums every rank's gradient (all_reduce) and keeps the local slice.

    Data-parallel training averages parameter gradients over ``world_size`` ranks; each rank's
    loss is the same global loss, so summing (not averaging) the feature gradients here makes the
    averaged result equal to the single-process gradient of the global batch.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world_size, rank = dist.get_world_size(), dist.get_rank()
        size = torch.tensor([tensor.shape[0]], device=tensor.device)
        sizes = [torch.zeros_like(size) for _ in range(world_size)]
        dist.all_gather(sizes, size)
        sizes = [int(s.item()) for s in sizes]
        padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        gathered = [torch.empty_like(padded) for _ in range(world_size)]
        dist.all_gather(gathered, padded.contiguous())
        ctx.sizes, ctx.rank = sizes, rank
        return torch.cat([g[:n] for g, n in zip(gathered, sizes)], dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (N_r, ...) from all ranks in rank order, with an exact gradient.

    Without an initialized process group of more than one rank this is the identity. Ranks may hold
    different batch sizes. Not the "gather without grad, put the local slice back" shortcut, which
    loses the gradient that flows through the other ranks' copies.
    """
    if not _distributed():
        return tensor
    return _GatherWithGrad.apply(tensor)


@torch.no_grad()
def gather_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Every rank's token ids and attention mask, right-padded to the longest, and this rank's first row.

    For losses whose texts are encoded after the gather (CoCoOp: each image encodes the global batch's texts under
    its own prompt). Ids carry no gradient. Without several ranks: the inputs themselves and 0.
    """
    if not _distributed():
        return input_ids, attention_mask, 0
    width = torch.tensor([input_ids.shape[1]], device=input_ids.device)
    dist.all_reduce(width, op=dist.ReduceOp.MAX)
    pad = int(width.item()) - input_ids.shape[1]
    ids = F.pad(input_ids, (0, pad), value=0)
    mask = F.pad(attention_mask.to(input_ids.dtype), (0, pad), value=0)
    rows = torch.tensor([input_ids.shape[0]], device=input_ids.device)
    sizes = [torch.zeros_like(rows) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, rows)
    offset = int(sum(s.item() for s in sizes[: dist.get_rank()]))
    return _GatherWithGrad.apply(ids), _GatherWithGrad.apply(mask), offset


def contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross entropy of each row against its own column (the positive pair is on the diagonal)."""
    return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))


def image_text_contrastive_loss(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE between N images and their N texts (Eq. 1 for addresses, Eq. 2 for captions).

    Args:
        image_embeds: (N, D) L2-normalized image embeddings V.
        text_embeds: (N, D) L2-normalized text embeddings T (address or caption+address).
        logit_scale: scalar ``log(1/tau)``; CLIP's learned temperature.
    """
    logits_per_image = logit_scale.exp() * image_embeds @ text_embeds.t()
    return symmetric_contrastive_loss(logits_per_image)


def symmetric_contrastive_loss(logits_per_image: torch.Tensor) -> torch.Tensor:
    """Eq. 1/2 from the (N, N) scaled image-text similarities themselves: image i's positive is text i.

    For texts that depend on the image (CoCoOp: ``logits[i, j] = scale * cos(v_i, t_j(v_i))``), where no text
    embedding matrix exists to multiply.
    """
    if logits_per_image.ndim != 2 or logits_per_image.shape[0] != logits_per_image.shape[1]:
        raise ValueError(f"logits must be a square (N, N) matrix, got {tuple(logits_per_image.shape)}")
    return 0.5 * (contrastive_loss(logits_per_image) + contrastive_loss(logits_per_image.t()))


def normalized_utm(utm: torch.Tensor) -> torch.Tensor:
    """Min-max normalize east and north separately over the batch (Eq. 3's U-hat), in float64.

    An axis with zero range (all images on one east or north line) becomes all zeros, so it
    contributes nothing to the distance instead of a division by zero.
    """
    if utm.ndim != 2 or utm.shape[1] != 2:
        raise ValueError(f"utm must have shape (N, 2) = (east, north), got {tuple(utm.shape)}")
    # A data-dependent branch: skipped under torch.compile, where it would split the graph in two.
    if not torch.compiler.is_compiling() and not torch.isfinite(utm).all():
        bad = torch.nonzero(~torch.isfinite(utm).all(dim=1)).flatten().tolist()
        raise ValueError(f"utm has non-finite coordinates in batch rows {bad}")
    utm = utm.to(torch.float64)
    # An axis spanning more than DBL_MAX (max - min = inf, then inf / inf = NaN) is halved first; min-max
    # normalization is scale-invariant, and every other input is left bit for bit as it was.
    utm = torch.where(torch.isinf(utm.max(dim=0).values - utm.min(dim=0).values), utm * 0.5, utm)
    low = utm.min(dim=0).values
    span = utm.max(dim=0).values - low
    return torch.where(span > 0, (utm - low) / torch.where(span > 0, span, 1.0), torch.zeros_like(utm))


def geography_distance_matrix(utm: torch.Tensor) -> torch.Tensor:
    """D^U of Eq. 3: L1 distance between min-max normalized UTM coordinates, (N, N) in [0, 2]."""
    u = normalized_utm(utm)
    return torch.cdist(u, u, p=1)


def geography_matching_loss(image_embeds: torch.Tensor, utm: torch.Tensor, target: str = "similarity") -> torch.Tensor:
    """Image-geography matching loss, Eq. 3-5: mean squared error between D^V and a target from D^U.

    Args:
        image_embeds: (N, D) image embeddings V (normalized here; D^V of Eq. 4 is cosine similarity).
        utm: (N, 2) UTM (east, north) in metres of each image.
        target: ``"similarity"`` uses ``1 - D^U`` (range -1..1), so nearby images are pulled together as
            §4.3 intends; ``"distance"`` uses ``D^U`` itself, Eq. 5 read literally.
    """
    if target not in ("similarity", "distance"):
        raise ValueError(f"target must be 'similarity' or 'distance', got {target!r}")
    if image_embeds.shape[0] != utm.shape[0]:
        raise ValueError(f"image_embeds has {image_embeds.shape[0]} rows but utm has {utm.shape[0]}")
    distance = geography_distance_matrix(utm).to(image_embeds.dtype)
    goal = 1.0 - distance if target == "similarity" else distance
    v = F.normalize(image_embeds, dim=-1)
    similarity = v @ v.t()
    return F.mse_loss(similarity, goal)


__all__ = [
    "contrastive_loss",
    "gather_tokens",
    "gather_with_grad",
    "geography_distance_matrix",
    "geography_matching_loss",
    "image_text_contrastive_loss",
    "normalized_utm",
    "symmetric_contrastive_loss",
]
