"""Address localization accuracy of AddressCLIP (paper §6.1 "Metrics"): SSA@k and SA@k, and distance accuracy.

For each query the model returns a ranked list of addresses (best first); the reference
is one address. With ``A = [S^m, S^c, S^n]`` (main street, set of cross streets,
neighborhood):

* sub-street-level accuracy ``ssa@k``: a hit when one of the top-k predictions equals the
  reference address (``A_p == A_gt``);
* street-level accuracy ``sa@k``: a hit when one of the top-k predictions has the
  reference's main street and neighborhood (``S^m == S^m_gt`` and ``S^n == S^n_gt``).

Addresses are compared after ``Address.parse``, so the order of the cross streets and the
release form vs. the canonical form do not matter. Text that does not parse raises
``ValueError`` naming the text and its position: a parser that returned blank fields on
both sides would otherwise score every query as a hit.

When the caller also gives coordinates (the top-1 predicted address's place and the reference
place of each query), the ``evaluate`` wrapper adds ``distance_accuracy``
(``modeling_addressclip.metrics.distance``): the median geodesic error in metres and the share of
queries within 25 m / 100 m / 1 km.

The plain function ``address_accuracy`` needs no ``evaluate``; the ``AddressAccuracy``
class wraps it so that ``evaluate.load("modeling_addressclip/metrics/address_accuracy")``
works. This file is copied by ``evaluate`` into its modules cache, hence absolute imports
only (and one import per line: evaluate's dependency scanner reads them line by line).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import datasets
import evaluate

from modeling_addressclip.address import Address
from modeling_addressclip.metrics.distance import DEFAULT_THRESHOLDS_M, distance_accuracy

DEFAULT_K = (1, 5)

_CITATION = """\
@inproceedings{xu2024addressclip,
  title     = {AddressCLIP: Empowering Vision-Language Models for City-wide Image Address Localization},
  author    = {Xu, Shixiong and Zhang, Chenghao and Fan, Lubin and Meng, Gaofeng and Xiang, Shiming and Ye, Jieping},
  booktitle = {Computer Vision -- ECCV 2024},
  year      = {2024},
  publisher = {Springer},
}
"""

_DESCRIPTION = """\
Top-k accuracy of image address localization from AddressCLIP (ECCV 2024, §6.1).
An address is a main street, the set of streets crossing it at the ends of the
sub-street, and a neighborhood. Sub-Street-level Accuracy (SSA@k) counts a query as
correct when any of its top-k predicted addresses equals the reference address;
Street-level Accuracy (SA@k) when any of the top-k has the reference's main street and
neighborhood (the cross streets may differ). Addresses are parsed before comparison, so
"Forbes Avenue between Craig Street and Morewood Avenue, Oakland",
"Forbes Avenue between Morewood Avenue and Craig Street, Oakland" and the release form
"Forbes Avenue, Oakland (Craig Street, Morewood Avenue)" are the same address.
Unparseable text raises ValueError instead of being scored.
Given coordinates, it also reports distance accuracy (GeoCLIP-style "% within d" at street
scale): the median geodesic error in metres between the top-1 predicted address's place and
the reference place, and the share of queries within 25 m, 100 m and 1 km.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `str`): per query, the predicted addresses ranked best
        first. Each list needs at least max(k) entries; every entry must parse.
    references (`list` of `str`): per query, the ground-truth address.
    k (`int` or `list` of `int`, optional): the cut-offs to report. Defaults to [1, 5].
    prediction_coordinates (`list` of `(float, float)`, optional): per query, the (latitude,
        longitude) of the top-1 predicted address's place (`model.address_places`). Give it with
        `reference_coordinates`, for every query, at `compute` (not `add_batch`).
    reference_coordinates (`list` of `(float, float)`, optional): per query, the (latitude,
        longitude) where the photo was taken.
    thresholds_m (`list` of `float`, optional): distance thresholds in metres. Defaults to
        [25, 100, 1000].
Returns:
    `dict` of `float`: `ssa@<k>` and `sa@<k>` (in [0, 1]) for each requested k, e.g.
    {"ssa@1": ..., "ssa@5": ..., "sa@1": ..., "sa@5": ...}; with coordinates also
    `median_error_m` (metres) and `within_25m`, `within_100m`, `within_1km` (in [0, 1]).
Raises:
    ValueError: unparseable prediction or reference (the message quotes the text and its
        index), predictions/references of different lengths, empty input, k < 1, or k
        larger than a query's prediction list (the message names the query); only one of the
        two coordinate lists, coordinates of another length than the references, or a None,
        NaN or out-of-range pair (the message names it).
Examples:
    >>> metric = evaluate.load("modeling_addressclip/metrics/address_accuracy")
    >>> metric.compute(
    ...     predictions=[["Forbes Avenue near Craig Street, Oakland", "Fifth Avenue near Craig Street, Oakland"]],
    ...     references=["Fifth Avenue near Craig Street, Oakland"],
    ...     k=[1, 2],
    ... )
    {'ssa@1': 0.0, 'ssa@2': 1.0, 'sa@1': 0.0, 'sa@2': 1.0}
"""


def _normalize_k(k: int | Iterable[int] | None) -> tuple[int, ...]:
    """Return the requested cut-offs as sorted distinct ints, each >= 1."""
    if k is None:
        return DEFAULT_K
    values = [k] if isinstance(k, int) else list(k)
    if not values:
        raise ValueError("k must be a positive int or a non-empty list of positive ints, got an empty list")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"k must be an int or a list of ints, got {value!r} in {k!r}")
        if value < 1:
            raise ValueError(f"k must be >= 1, got {value} in {k!r}")
    return tuple(sorted(set(values)))


class _ParseCache:
    """Parse each distinct address string once into ``(address id, street id)``.

    Equal addresses (e.g. release vs canonical form) share the address id; addresses with
    the same ``street_key`` share the street id, so the ranking loop compares ints only.
    The error names the first place a bad string occurs.
    """

    def __init__(self) -> None:
        self.ids: dict[str, tuple[int, int]] = {}
        self._address_ids: dict[Address, int] = {}
        self._street_ids: dict[tuple[str, str], int] = {}

    def parse(self, text: object, where: str) -> tuple[int, int]:
        if not isinstance(text, str):
            raise TypeError(f"{where} must be an address string, got {type(text).__name__}: {text!r}")
        try:
            address = Address.parse(text)
        except ValueError as err:
            raise ValueError(f"{where} is not a parseable address: {text!r} ({err})") from None
        ids = (
            self._address_ids.setdefault(address, len(self._address_ids)),
            self._street_ids.setdefault(address.street_key, len(self._street_ids)),
        )
        self.ids[text] = ids
        return ids


def address_accuracy(
    predictions: Sequence[Sequence[str]],
    references: Sequence[str],
    k: int | Iterable[int] | None = DEFAULT_K,
) -> dict[str, float]:
    """SSA@k and SA@k (paper §6.1) of ranked address predictions against reference addresses.

    Args:
        predictions: per query, a list of address strings ranked best first.
        references: per query, the ground-truth address string.
        k: a cut-off or a list of cut-offs (default ``(1, 5)``).

    Returns:
        ``{"ssa@<k>": float, ..., "sa@<k>": float, ...}``, fractions of queries in [0, 1].
    """
    ks = _normalize_k(k)
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions must be a list of ranked lists and references a list of strings, not a string")
    predictions = list(predictions)
    references = list(references)
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references must have the same length, got {len(predictions)} predictions "
            f"and {len(references)} references"
        )
    if not references:
        raise ValueError("address_accuracy needs at least one query, got empty predictions and references")
    max_k = ks[-1]
    cache = _ParseCache()
    known = cache.ids
    # *_hits_at[r]: how many queries have their first hit at 0-based rank r (r == max_k: no
    # hit in the top max_k); a query hits at k exactly when that rank is < k.
    ssa_hits_at = [0] * (max_k + 1)
    sa_hits_at = [0] * (max_k + 1)
    for i, (ranked, reference) in enumerate(zip(predictions, references)):
        if isinstance(ranked, (str, bytes)) or not hasattr(ranked, "__len__"):
            raise TypeError(
                f"predictions[{i}] must be a ranked list of address strings, got {type(ranked).__name__}: {ranked!r}"
            )
        if len(ranked) < max_k:
            raise ValueError(
                f"k={max_k} is larger than the {len(ranked)} prediction(s) of example {i} "
                f"(predictions[{i}] = {list(ranked)!r}); give at least {max_k} ranked predictions per example"
            )
        try:
            gold, gold_street = known.get(reference) or cache.parse(reference, f"references[{i}]")
            parsed = [known.get(text) or cache.parse(text, f"predictions[{i}][{j}]") for j, text in enumerate(ranked)]
        except TypeError:  # an unhashable entry (e.g. a nested list): say which one
            cache.parse(reference, f"references[{i}]")
            for j, text in enumerate(ranked):
                cache.parse(text, f"predictions[{i}][{j}]")
            raise
        first_ssa = first_sa = max_k
        for rank in range(max_k):
            address, street = parsed[rank]
            if first_sa == max_k and street == gold_street:
                first_sa = rank
            if address == gold:
                first_ssa = rank
                break
        ssa_hits_at[first_ssa] += 1
        sa_hits_at[first_sa] += 1
    n = len(references)
    result: dict[str, float] = {}
    for name, hits_at in (("ssa", ssa_hits_at), ("sa", sa_hits_at)):
        for cut in ks:
            result[f"{name}@{cut}"] = sum(hits_at[:cut]) / n
    return result


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AddressAccuracy(evaluate.Metric):
    """``evaluate`` wrapper of :func:`address_accuracy` (SSA@k, SA@k)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Value("string"),
                }
            ),
            homepage="https://github.com/xsx1001/AddressCLIP",
            codebase_urls=["https://github.com/xsx1001/AddressCLIP"],
            reference_urls=["https://arxiv.org/abs/2407.08156"],
        )

    def _compute(
        self,
        predictions,
        references,
        k=None,
        prediction_coordinates=None,
        reference_coordinates=None,
        thresholds_m=DEFAULT_THRESHOLDS_M,
    ) -> dict[str, float]:
        result = address_accuracy(predictions, references, k=DEFAULT_K if k is None else k)
        if prediction_coordinates is None and reference_coordinates is None:
            return result
        if prediction_coordinates is None or reference_coordinates is None:
            given = "prediction_coordinates" if reference_coordinates is None else "reference_coordinates"
            raise ValueError(f"{given} was given alone: distance accuracy needs both coordinate lists")
        for name, coordinates in (("prediction", prediction_coordinates), ("reference", reference_coordinates)):
            if len(coordinates) != len(references):
                raise ValueError(
                    f"{name}_coordinates has {len(coordinates)} entries for {len(references)} references: "
                    "give one (latitude, longitude) pair per query"
                )
        return {**result, **distance_accuracy(prediction_coordinates, reference_coordinates, thresholds_m)}
