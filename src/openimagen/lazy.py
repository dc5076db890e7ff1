"""Package namespaces that import their submodules on first use.

``openimagen.diffusion``, ``openimagen.cascade`` and ``openimagen.serve`` re-export the public
names of their submodules. Importing them eagerly would load torch (or FastAPI) for anything
that only needs a light submodule, such as the command line reading
:mod:`openimagen.cascade.sampling` to build its options. Each of these packages lists its
re-exports under ``if TYPE_CHECKING:`` (so type checkers and the import contract see every
dependency) and sets ``__getattr__ = lazy_exports(__name__, submodules)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any


def lazy_exports(package: str, submodules: Sequence[str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``name`` is taken from the first of
    ``submodules`` whose ``__all__`` lists it (imported then, and cached in the package)."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):  # probes such as __wrapped__: not a re-export
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        for submodule in submodules:
            module = importlib.import_module(f"{package}.{submodule}")
            if name in getattr(module, "__all__", ()):
                value = getattr(module, name)
                setattr(importlib.import_module(package), name, value)
                return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


__all__ = ["lazy_exports"]
