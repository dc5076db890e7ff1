"""The ``openimagen`` command line: a thin layer over the public API.

One module per command (``info``, ``generate``, ``encode_text``, ``serve``, ``verify``,
``train``, ``export``, ``evaluate`` for ``eval``, ``rate``), each with ``register(subparsers)``
and ``run(args)``; the options several commands share are in :mod:`.options`; :mod:`.main`
builds the parser and runs a command. ``openimagen`` (the console script),
``python -m openimagen`` and ``python -m openimagen.cli`` all call :func:`main`.
"""

from openimagen.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
