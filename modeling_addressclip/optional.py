"""Optional dependencies: checked before any work starts, with the exact ``pip install`` line to run."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

EXTRAS = {"scipy": "pitts", "pillow_heif": "heic"}


class MissingDependencyError(ImportError):
    """An optional package is not installed; the message says which ``pip install`` brings it."""


def install_hint(module: str) -> str:
    """The ``pip install`` line for the extra that brings ``module``."""
    extra = EXTRAS.get(module)
    return f'pip install "addressclip[{extra}]"' if extra else f"pip install {module}"


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``purpose`` and the install line."""
    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(f"{purpose} needs the optional package {module!r}: {install_hint(module)}")
    return importlib.import_module(module)


__all__ = ["EXTRAS", "MissingDependencyError", "install_hint", "require"]
