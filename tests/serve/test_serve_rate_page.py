"""The rating page in headless Chromium: two raters, a reload, undo, results and CSV export."""

from __future__ import annotations

import csv
import io
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from openimagen.eval.drawbench import read_manifest
from openimagen.serve import ServerThread
from openimagen.serve.rate_app import create_rate_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOTAL = 4  # prompts of the shared run (tests/eval/conftest.py)


@pytest.fixture(scope="module")
def server(drawbench_run, tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "votes.sqlite"
    with ServerThread(create_rate_app(drawbench_run, db_path=db)) as running:
        running.db = db
        yield running


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


def open_page(browser, url):
    """A page in a fresh context (its own localStorage: another rater's browser)."""
    page = browser.new_context().new_page()
    page.console_errors = []
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    return page


def db_rows(db, sql, params=()):
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def wait_progress(page, done):
    page.wait_for_function(
        "text => document.getElementById('progress-text').textContent === text",
        arg=f"Rated {done} of {TOTAL}",
    )


def shown(page):
    """The prompt on the page and the image URLs of set A and set B."""
    srcs = [page.eval_on_selector_all(f"#set-{s} img", "els => els.map(e => e.src)") for s in "ab"]
    return page.text_content("#prompt"), srcs[0], srcs[1]


def press(page, *keys):
    for key in keys:
        page.keyboard.press(key)


def test_two_raters_vote_a_reload_loses_nothing_and_results_match_the_database(
    server, browser, drawbench_run
):
    alice = open_page(browser, server.url + "/")
    alice.fill("#rater", "alice")
    alice.click("#start")
    wait_progress(alice, 0)
    first = shown(alice)
    assert len(first[1]) == len(first[2]) == 2  # two images per set
    press(alice, "q", "d", "Enter")  # keyboard: quality A, alignment B
    wait_progress(alice, 1)
    second = shown(alice)
    alice.click("[data-question=quality] [data-answer=indifferent]")  # mouse
    alice.click("[data-question=alignment] [data-answer=A]")
    assert (
        alice.get_attribute("[data-question=alignment] [data-answer=A]", "aria-pressed") == "true"
    )
    alice.click("#submit")
    wait_progress(alice, 2)
    third = shown(alice)

    alice.reload()  # the name comes back from localStorage and the page resumes
    wait_progress(alice, 2)
    assert shown(alice) == third  # same prompt, same sides, same images
    press(alice, "u")  # undo the last vote: the second prompt is back, with its sides
    wait_progress(alice, 1)
    assert shown(alice) == second
    press(alice, "e", "s", "Enter")
    wait_progress(alice, 2)
    for done in range(3, TOTAL + 1):
        press(alice, "w", "a", "Enter")
        wait_progress(alice, done)
    alice.wait_for_selector("#finished", state="visible")

    bob = open_page(browser, server.url + "/")
    bob.fill("#rater", "bob")
    bob.keyboard.press("Enter")  # submits the name form
    wait_progress(bob, 0)
    for i in range(TOTAL):
        press(bob, "eq"[i % 2], "ad"[i % 2], "Enter")
        wait_progress(bob, i + 1)

    votes = db_rows(server.db, "SELECT * FROM votes WHERE rater = 'alice' ORDER BY id")
    assert len(votes) == TOTAL + 1  # the undone vote is kept
    assert [v["prompt"] for v in votes[:3]] == [first[0], second[0], second[0]]
    assert (votes[0]["quality"], votes[0]["alignment"]) == ("A", "B")
    assert (votes[1]["quality"], votes[1]["alignment"], votes[1]["undone_at"] is None) == (
        "indifferent",
        "A",
        False,
    )
    assert (votes[2]["quality"], votes[2]["alignment"], votes[2]["undone_at"]) == (
        "B",
        "indifferent",
        None,
    )
    # the recorded left model is the one whose images were shown as set A
    manifest = {r["path"]: r for r in read_manifest(drawbench_run)}
    left = votes[0]["left_model"]
    expected = sorted(
        p for p, r in manifest.items() if r["model"] == left and r["prompt"] == first[0]
    )
    for url, path in zip(first[1], expected, strict=True):
        served = alice.request.get(url).body()
        with Image.open(io.BytesIO(served)) as a, Image.open(drawbench_run / path) as b:
            assert np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))
    sides = {(v["rater"], v["left_model"]) for v in db_rows(server.db, "SELECT * FROM votes")}
    assert {r for r, _ in sides} == {"alice", "bob"}

    # the results page shows the shares of the database's active votes
    results = open_page(browser, server.url + "/results")
    active = db_rows(server.db, "SELECT * FROM votes WHERE undone_at IS NULL")
    assert len(active) == 2 * TOTAL
    for question in ("quality", "alignment"):
        cells = results.eval_on_selector_all(
            f"#rates-{question} tr[data-category=all] td", "tds => tds.map(t => t.textContent)"
        )
        alpha = sum(v[{"A": "left_model", "B": "right_model"}.get(v[question], "x")] == "alpha"
                    for v in active if v[question] != "indifferent")  # fmt: skip
        indifferent = sum(v[question] == "indifferent" for v in active)
        beta = len(active) - alpha - indifferent
        assert cells[:2] == ["all", str(len(active))]
        for cell, count in zip(cells[2:], (alpha, indifferent, beta), strict=True):
            assert cell.startswith(f"{100 * count / len(active):.1f}% [") and f"({count})" in cell
    assert results.locator("svg").count() == 1
    assert "2 raters" in results.text_content("#summary")

    # the CSV export is the database, row for row
    exported = list(
        csv.DictReader(io.StringIO(results.request.get(server.url + "/votes.csv").text()))
    )
    stored = db_rows(server.db, "SELECT * FROM votes ORDER BY id")
    assert exported == [{k: "" if v is None else str(v) for k, v in row.items()} for row in stored]
    for page in (alice, bob, results):
        assert page.console_errors == []
