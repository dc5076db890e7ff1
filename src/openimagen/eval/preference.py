"""Preference rates from pairwise votes, with 95% Wilson intervals, as tables, CSV and SVG.

For each question (quality, alignment), overall and per category, the share of votes that
prefer each model and the share that are indifferent; each share is a binomial proportion
of that block's votes with its Wilson score interval (:func:`openimagen.eval.stats.wilson_interval`).
The three shares of a block sum to 1. The plot follows the paper's DrawBench figure: one
bar per category, split into the two models' preference rates (and indifference between).
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from typing import Any

from openimagen.eval.stats import wilson_interval
from openimagen.eval.votes import QUESTIONS, VOTE_COLUMNS

OVERALL = "all"
INDIFFERENT = "indifferent"
COLORS = ("#3b6fb6", "#bbbbbb", "#e07b39")  # first model, indifferent, second model


def preferred(vote: dict[str, Any], question: str) -> str:
    """The model a vote prefers on ``question``, or ``"indifferent"``."""
    answer = vote[question]
    if answer == "A":
        return vote["left_model"]
    if answer == "B":
        return vote["right_model"]
    return INDIFFERENT


def _rate(count: int, total: int) -> dict[str, Any]:
    low, high = wilson_interval(count, total)
    return {"count": count, "rate": count / total if total else None, "ci95": [low, high]}


def _block(votes: Sequence[dict[str, Any]], question: str, models: Sequence[str]) -> dict:
    choices = [preferred(v, question) for v in votes]
    return {
        "votes": len(votes),
        "preferred": {m: _rate(choices.count(m), len(votes)) for m in models},
        INDIFFERENT: _rate(choices.count(INDIFFERENT), len(votes)),
    }


def summarize_votes(
    votes: Sequence[dict[str, Any]], models: Sequence[str], categories: Sequence[str]
) -> dict[str, Any]:
    """Rates per question, overall and per category (in ``categories`` order)."""
    models = sorted(models)
    return {
        "models": models,
        "votes": len(votes),
        "raters": sorted({v["rater"] for v in votes}),
        "questions": {
            q: {
                OVERALL: _block(votes, q, models),
                "categories": {
                    c: _block([v for v in votes if v["category"] == c], q, models)
                    for c in categories
                },
            }
            for q in QUESTIONS
        },
    }


def _rows(summary: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for question, blocks in summary["questions"].items():
        out.append((question, OVERALL, blocks[OVERALL]))
        out += [(question, c, b) for c, b in blocks["categories"].items()]
    return out


def results_csv(summary: dict[str, Any]) -> str:
    """One row per question, category and choice (each model, indifferent)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["question", "category", "choice", "count", "votes", "rate", "ci95_low",
                     "ci95_high"])  # fmt: skip
    for question, category, block in _rows(summary):
        choices = [*block["preferred"].items(), (INDIFFERENT, block[INDIFFERENT])]
        for choice, rate in choices:
            share = "" if rate["rate"] is None else f"{rate['rate']:.6f}"
            low, high = rate["ci95"]
            writer.writerow([question, category, choice, rate["count"], block["votes"], share,
                             f"{low:.6f}", f"{high:.6f}"])  # fmt: skip
    return buffer.getvalue()


def votes_csv(votes: Sequence[dict[str, Any]]) -> str:
    """Every vote, undone ones included, with the database's columns in its order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(VOTE_COLUMNS)
    for vote in votes:
        writer.writerow(["" if vote[c] is None else vote[c] for c in VOTE_COLUMNS])
    return buffer.getvalue()


# -- the plot ------------------------------------------------------------------------------
def _pct(rate: dict[str, Any]) -> str:
    return "-" if rate["rate"] is None else f"{100 * rate['rate']:.0f}%"


def preference_svg(summary: dict[str, Any]) -> str:
    """An inline SVG: per question, one stacked bar per category with 95% interval whiskers."""
    first, second = summary["models"]
    label_w, bar_w, row_h, top = 170, 420, 22, 46
    rows = [OVERALL, *summary["questions"][QUESTIONS[0]]["categories"]]
    panel_h = top + row_h * len(rows) + 16
    width, height = label_w + bar_w + 70, panel_h * len(QUESTIONS) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12" '
             'role="img" aria-label="preference rates with 95% intervals">']  # fmt: skip
    legend = [(first, COLORS[0]), (INDIFFERENT, COLORS[1]), (second, COLORS[2])]
    x = label_w
    for name, color in legend:
        parts.append(f'<rect x="{x}" y="6" width="12" height="12" fill="{color}"/>'
                     f'<text x="{x + 16}" y="16">{html.escape(name)}</text>')  # fmt: skip
        x += 30 + 7 * len(name)
    for p, question in enumerate(QUESTIONS):
        y0 = 30 + p * panel_h
        blocks = summary["questions"][question]
        parts.append(f'<text x="0" y="{y0 + 20}" font-weight="bold">{question}</text>')
        for r, category in enumerate(rows):
            block = blocks[OVERALL] if category == OVERALL else blocks["categories"][category]
            y = y0 + top - 14 + r * row_h
            label = f"{category} (n={block['votes']})"
            parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">'
                         f"{html.escape(label)}</text>")  # fmt: skip
            if not block["votes"]:
                parts.append(f'<rect x="{label_w}" y="{y}" width="{bar_w}" height="16" '
                             'fill="none" stroke="#ccc"/>')  # fmt: skip
                continue
            a, b = block["preferred"][first], block["preferred"][second]
            wa, wb = bar_w * a["rate"], bar_w * b["rate"]
            parts.append(
                f'<rect x="{label_w}" y="{y}" width="{wa:.1f}" height="16" fill="{COLORS[0]}"/>'
                f'<rect x="{label_w + wa:.1f}" y="{y}" width="{bar_w - wa - wb:.1f}" height="16" '
                f'fill="{COLORS[1]}"/><rect x="{label_w + bar_w - wb:.1f}" y="{y}" '
                f'width="{wb:.1f}" height="16" fill="{COLORS[2]}"/>'
            )
            # whiskers: the first model's interval from the left edge, the second's from the right
            for rate, from_right in ((a, False), (b, True)):
                low, high = rate["ci95"]
                x1, x2 = (1 - high, 1 - low) if from_right else (low, high)
                x1, x2 = label_w + bar_w * x1, label_w + bar_w * x2
                cy = y + (5 if not from_right else 11)
                parts.append(f'<line x1="{x1:.1f}" y1="{cy}" x2="{x2:.1f}" y2="{cy}" '
                             'stroke="#000" stroke-width="1.2"/>')  # fmt: skip
            parts.append(f'<text x="{label_w + bar_w + 6}" y="{y + 13}">{_pct(a)} / {_pct(b)}'
                         "</text>")  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


# -- the results page ----------------------------------------------------------------------
def _cell(rate: dict[str, Any]) -> str:
    low, high = rate["ci95"]
    if rate["rate"] is None:
        return "<td>-</td>"
    return (f"<td>{100 * rate['rate']:.1f}% <small>[{100 * low:.1f}, {100 * high:.1f}] "
            f"({rate['count']})</small></td>")  # fmt: skip


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def results_html(summary: dict[str, Any], title: str) -> str:
    """The results page: per question a table of rates with intervals, then the plot."""
    first, second = (html.escape(m) for m in summary["models"])
    raters = ", ".join(html.escape(r) for r in summary["raters"]) or "none yet"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><link rel='icon' "
        f"href='data:,'><title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}"
        "td,th{padding:.2rem .8rem;text-align:right}td:first-child,th:first-child{text-align:left}"
        "small{color:#666}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p id='summary'>{_plural(summary['votes'], 'vote')} by "
        f"{_plural(len(summary['raters']), 'rater')} ({raters})."
        " Shares of the votes with 95% Wilson intervals; the count in parentheses.</p>",
        "<p><a href='/'>Rate</a> · <a href='/results.csv'>results.csv</a> · "
        "<a href='/results.json'>results.json</a> · <a href='/votes.csv'>votes.csv</a></p>",
    ]
    for question, blocks in summary["questions"].items():
        parts.append(f"<h2>{question}</h2><table id='rates-{question}'><tr><th>category</th>"
                     f"<th>votes</th><th>{first}</th><th>indifferent</th><th>{second}</th></tr>")  # fmt: skip
        rows = [(OVERALL, blocks[OVERALL]), *blocks["categories"].items()]
        for category, block in rows:
            cells = "".join(_cell(block["preferred"][m]) for m in summary["models"][:1])
            cells += _cell(block[INDIFFERENT]) + _cell(block["preferred"][summary["models"][1]])
            parts.append(f"<tr data-category='{html.escape(category, quote=True)}'>"
                         f"<td>{html.escape(category)}</td><td>{block['votes']}</td>{cells}</tr>")  # fmt: skip
        parts.append("</table>")
    parts.append("<h2>Plot</h2>" + preference_svg(summary) + "</body></html>\n")
    return "\n".join(parts)
