"""Evaluation metrics of AddressCLIP (paper §6.1).

``address_accuracy`` is the plain function (SSA@k, SA@k); ``distance_accuracy`` measures how far the
top-1 address's place is from where the photo was taken (median metres, share within 25 m / 100 m /
1 km). The ``address_accuracy`` file is also an
``evaluate`` metric script; ``load_address_accuracy()`` loads it with ``evaluate.load``
from wherever the package is installed (``evaluate.load`` resolves a relative folder
against the current directory, so ``"modeling_addressclip/metrics/address_accuracy"``
only works from the repository root).
"""

from __future__ import annotations

from pathlib import Path

from modeling_addressclip.metrics.address_accuracy.address_accuracy import AddressAccuracy, address_accuracy
from modeling_addressclip.metrics.distance import distance_accuracy, geodesic_distances

ADDRESS_ACCURACY_PATH = str(Path(__file__).resolve().parent / "address_accuracy")


def load_address_accuracy(**kwargs):
    """``evaluate.load`` of the ``address_accuracy`` metric folder (kwargs go to ``evaluate.load``)."""
    import evaluate

    return evaluate.load(ADDRESS_ACCURACY_PATH, **kwargs)


__all__ = [
    "ADDRESS_ACCURACY_PATH",
    "AddressAccuracy",
    "address_accuracy",
    "distance_accuracy",
    "geodesic_distances",
    "load_address_accuracy",
]
