"""Prompt suites with categories: DrawBench (shipped) and any CSV or JSONL of the same shape.

DrawBench (Saharia et al., 2022, arXiv 2205.11487, section 3 and appendix C) is 200 prompts
in 11 categories. The copy in ``eval/data/drawbench.csv`` is the authors' public spreadsheet
as CSV (columns ``Prompt,Category``), kept unchanged; see ``eval/data/README.md`` for where it
comes from. Category labels are stripped of surrounding spaces when read, because one label
of the source ("Gary Marcus et al. ") ends with a space.

A user's suite is a ``.csv`` with a header row naming a ``Prompt`` and a ``Category`` column
(any letter case; other columns are ignored) or a ``.jsonl`` file with one object per line,
``{"prompt": "...", "category": "..."}``. A prompt's index is its position in the file
(0-based); evaluation seeds are derived from it, so every model sees the same noise.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.resources
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

from openimagen.config import iter_jsonl
from openimagen.errors import InvalidArgumentError
from openimagen.text import check_prompt

DRAWBENCH_SOURCE = (
    "DrawBench (Saharia et al., 2022, arXiv 2205.11487): the authors' public prompt sheet, "
    "CSV export as kept in brianfitzgerald/smolmodels data/drawbench.csv"
)
SUFFIXES = (".csv", ".jsonl")


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One prompt of a suite: its position in the file, its text and its category."""

    index: int
    text: str
    category: str


@dataclasses.dataclass(frozen=True)
class PromptSuite:
    """The prompts of one file, in file order, and where they came from."""

    name: str
    source: str
    prompts: tuple[Prompt, ...]

    @property
    def categories(self) -> list[str]:
        """Category names in order of first appearance."""
        return list(dict.fromkeys(p.category for p in self.prompts))

    def fingerprint(self) -> str:
        """sha256 of the (index, text, category) list: two suites agree iff this does."""
        rows = [[p.index, p.text, p.category] for p in self.prompts]
        return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()

    def select(self, num_prompts: int | None) -> list[Prompt]:
        """The first ``num_prompts`` prompts taken round-robin over categories (all if None).

        Round-robin keeps every category in a small subset; indices (and so seeds) stay
        those of the file.
        """
        if num_prompts is None or num_prompts >= len(self.prompts):
            return list(self.prompts)
        if isinstance(num_prompts, bool) or not isinstance(num_prompts, int) or num_prompts < 1:
            raise InvalidArgumentError("num_prompts", num_prompts, "a positive integer or None")
        queues = [[p for p in self.prompts if p.category == c] for c in self.categories]
        chosen: list[Prompt] = []
        while len(chosen) < num_prompts:
            for queue in queues:
                if queue and len(chosen) < num_prompts:
                    chosen.append(queue.pop(0))
        return sorted(chosen, key=lambda p: p.index)


def drawbench() -> PromptSuite:
    """The 200 DrawBench prompts shipped with the package."""
    resource = importlib.resources.files("openimagen.eval") / "data" / "drawbench.csv"
    text = resource.read_text(encoding="utf-8")
    return PromptSuite("drawbench", DRAWBENCH_SOURCE, tuple(_parse_csv(text, "drawbench.csv")))


def load_prompt_suite(path: str | os.PathLike | None) -> PromptSuite:
    """DrawBench for None or ``"drawbench"``, else the CSV or JSONL file at ``path``."""
    if path is None or str(path) == "drawbench":
        return drawbench()
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise InvalidArgumentError(
            "--prompts", str(path), "a .csv or .jsonl file, or 'drawbench'",
            "Give the file a .csv (header Prompt,Category) or .jsonl (one "
            '{"prompt", "category"} object per line) name.',
        )  # fmt: skip
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's BOM is not a column name
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(
            "--prompts", str(path), "a readable UTF-8 file", f"Reading it failed: {exc}."
        ) from exc
    if path.suffix.lower() == ".csv":
        prompts = _parse_csv(text, str(path))
    else:
        prompts = _parse_jsonl(text, str(path))
    return PromptSuite(path.stem, str(path), tuple(prompts))


def _prompt(where: str, index: int, text: object, category: object) -> Prompt:
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgumentError(
            f"{where}: prompt", text, "a non-empty string", "Fill in the prompt or delete the row."
        )
    check_prompt(text, f"{where}: prompt")  # clean text: no control characters, no surrogates
    if not isinstance(category, str) or not category.strip():
        raise InvalidArgumentError(
            f"{where}: category", category, "a non-empty string",
            "Every prompt needs a category (results are reported per category).",
        )  # fmt: skip
    return Prompt(index, text.strip(), category.strip())


def _parse_csv(text: str, name: str) -> list[Prompt]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        header = []
    except csv.Error as exc:
        raise InvalidArgumentError(
            f"{name} line 1", text[:60], "a CSV header row", f"{exc}."
        ) from exc
    columns = {h.strip().lower(): i for i, h in enumerate(header)}
    missing = [c for c in ("prompt", "category") if c not in columns]
    if missing:
        raise InvalidArgumentError(
            f"{name} line 1", ",".join(header), "a header row with Prompt and Category columns",
            f"Add the missing column(s): {', '.join(m.title() for m in missing)}.",
        )  # fmt: skip
    prompts: list[Prompt] = []
    try:
        for row in reader:
            where = f"{name} line {reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue
            if len(row) < len(header):
                raise InvalidArgumentError(
                    where, ",".join(row), f"{len(header)} columns ({','.join(header)})",
                    "Quote prompts that contain commas.",
                )  # fmt: skip
            text_cell, category = row[columns["prompt"]], row[columns["category"]]
            prompts.append(_prompt(where, len(prompts), text_cell, category))
    except csv.Error as exc:
        raise InvalidArgumentError(
            f"{name} line {reader.line_num}", "the row", "valid CSV", f"{exc}."
        ) from exc
    return _non_empty(prompts, name)


def _parse_jsonl(text: str, name: str) -> list[Prompt]:
    prompts: list[Prompt] = []
    for where, record in iter_jsonl(text, name):
        if not isinstance(record, dict):
            raise InvalidArgumentError(where, record, 'an object {"prompt": ..., "category": ...}')
        fields = {k.lower(): v for k, v in record.items()}
        prompts.append(_prompt(where, len(prompts), fields.get("prompt"), fields.get("category")))
    return _non_empty(prompts, name)


def _non_empty(prompts: Sequence[Prompt], name: str) -> list[Prompt]:
    if not prompts:
        raise InvalidArgumentError("--prompts", name, "a file with at least one prompt")
    return list(prompts)
