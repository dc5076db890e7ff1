"""Evaluation reports: report.json and a self-contained index.html beside the images."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from openimagen.fileio import atomic_write, atomic_write_json

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table.summary td, table.summary th { padding: 0.2em 0.8em; text-align: right; }
table.summary th:first-child, table.summary td:first-child { text-align: left; }
.prompt { margin: 1em 0 0.3em; font-weight: bold; }
.cell { display: inline-block; vertical-align: top; width: 170px; margin: 0 6px 6px 0; }
.cell img { width: 160px; height: 160px; image-rendering: pixelated; border: 4px solid; }
.ok img { border-color: #2a2; } .bad img { border-color: #d22; }
.verdict { font-size: 0.8em; } .ok .verdict { color: #2a2; } .bad .verdict { color: #d22; }
"""


def _pct(rate: dict[str, Any]) -> str:
    if not rate["total"]:
        return "-"
    low, high = rate["ci95"]
    return (
        f"{100 * rate['accuracy']:.1f}% <small>[{100 * low:.1f}, {100 * high:.1f}] "
        f"n={rate['total']}</small>"
    )


def _summary_rows(label: str, block: dict[str, Any], attributes: list[str]) -> str:
    cells = "".join(f"<td>{_pct(block['attributes'][a])}</td>" for a in attributes)
    return f"<tr><td>{html.escape(label)}</td><td>{_pct(block['all_correct'])}</td>{cells}</tr>"


def render_html(report: dict[str, Any]) -> str:
    """The HTML page of a ShapeBench report: summary table, then every image marked right or wrong."""
    summary = report["summary"]
    attributes = list(summary["attributes"])
    head = "".join(f"<th>{html.escape(a)}</th>" for a in attributes)
    rows = [_summary_rows("all", summary, attributes)]
    for name, block in summary.get("categories", {}).items():
        rows.append(_summary_rows(name, block, attributes))
    settings = html.escape(", ".join(f"{k}={v}" for k, v in sorted(report["settings"].items())))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>ShapeBench report</title>",
        f"<style>{_STYLE}</style></head><body><h1>ShapeBench</h1><p>{settings}</p>",
        "<p>Rates with 95% Wilson confidence intervals.</p>",
        f"<table class='summary'><tr><th>category</th><th>all correct</th>{head}</tr>",
        *rows,
        "</table><h2>Images</h2>",
    ]
    current = None
    for row in report["results"]:
        if row["prompt_index"] != current:
            current = row["prompt_index"]
            category = (
                f" <small>({html.escape(row['category'])})</small>" if row["category"] else ""
            )
            parts.append(f"<div class='prompt'>{html.escape(row['prompt'])}{category}</div>")
        ok = row["all_correct"]
        verdict = "right" if ok else "wrong: " + row["reason"]
        parts.append(
            f"<div class='cell {'ok' if ok else 'bad'}'>"
            f"<img src='{html.escape(row['image'])}' alt='seed {row['seed']}'>"
            f"<div class='verdict'>seed {row['seed']}: {html.escape(verdict)}</div></div>"
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(out_dir: str | os.PathLike, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.json`` and ``index.html`` into ``out_dir`` atomically; returns both paths."""
    out_dir = Path(out_dir)
    json_path, html_path = out_dir / "report.json", out_dir / "index.html"
    atomic_write_json(json_path, report)
    with atomic_write(html_path, "w") as handle:
        handle.write(render_html(report))
    return json_path, html_path
