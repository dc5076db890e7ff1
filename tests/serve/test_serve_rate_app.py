"""The rating server (serve/rate_app.py): idempotent votes, undo, limits, results, no text chunks."""

from __future__ import annotations

import csv
import io
import sqlite3

import httpx
import numpy as np
import pytest
from PIL import Image

from cli_testutil import run
from openimagen.eval.drawbench import read_manifest
from openimagen.eval.stats import wilson_interval
from openimagen.serve import ServerThread, ServeSettings
from openimagen.serve.rate_app import create_rate_app, strip_png_text


@pytest.fixture(scope="module")
def server(drawbench_run, tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "votes.sqlite"
    settings = ServeSettings(max_body_bytes=1024)
    with ServerThread(create_rate_app(drawbench_run, db_path=db, settings=settings)) as running:
        running.db = db
        yield running


def rows(db, sql="SELECT * FROM votes ORDER BY id", params=()):
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def vote(client, rater, state, quality, alignment, vote_id):
    body = {"rater": rater, "prompt_index": state["item"]["prompt_index"], "quality": quality,
            "alignment": alignment, "vote_id": vote_id}  # fmt: skip
    return client.post("/api/vote", json=body)


def test_the_page_is_shown_the_left_models_images_without_their_text_chunks(server, drawbench_run):
    manifest = read_manifest(drawbench_run)
    with httpx.Client(base_url=server.url) as client:
        state = client.get("/api/next", params={"rater": "sides-check"}).json()
        item = state["item"]
        served = [client.get(url) for url in item["a"] + item["b"]]
    assert all(r.status_code == 200 for r in served)
    left, right = rows(server.db, "SELECT left_model, right_model FROM sides WHERE rater = ? "
                       "AND prompt_index = ?", ("sides-check", item["prompt_index"]))[0].values()  # fmt: skip
    mine = {m: [r for r in manifest if r["model"] == m and r["prompt_index"] == item["prompt_index"]]
            for m in (left, right)}  # fmt: skip
    expected = [drawbench_run / r["path"] for r in mine[left] + mine[right]]
    for response, path in zip(served, expected, strict=True):
        assert np.array_equal(pixels(response.content), pixels(path.read_bytes()))
        with Image.open(io.BytesIO(response.content)) as image:
            assert not getattr(image, "text", {})  # no model_id, prompt or seed to peek at
        with Image.open(path) as original:
            assert original.text["model_id"] == "tiny"
    assert "alpha" not in str(state) and "beta" not in str(state)


def test_a_double_submit_stores_one_vote_and_a_second_vote_is_refused(server):
    with httpx.Client(base_url=server.url) as client:
        state = client.get("/api/next", params={"rater": "double"}).json()
        first = vote(client, "double", state, "A", "B", "vote-0001")
        again = vote(client, "double", state, "A", "B", "vote-0001")
        assert first.status_code == again.status_code == 200
        assert first.json()["recorded"] is True and again.json()["recorded"] is False
        assert first.json()["done"] == again.json()["done"] == 1
        changed = vote(client, "double", state, "B", "B", "vote-0001")
        other = vote(client, "double", state, "A", "B", "vote-0002")
    assert changed.status_code == other.status_code == 409
    assert "already voted" in other.json()["error"]["message"]
    stored = rows(server.db, "SELECT * FROM votes WHERE rater = 'double'")
    assert len(stored) == 1 and stored[0]["quality"] == "A" and stored[0]["alignment"] == "B"


def test_undo_takes_back_only_the_last_vote_and_keeps_its_row(server):
    with httpx.Client(base_url=server.url) as client:
        s0 = client.get("/api/next", params={"rater": "undoer"}).json()
        s1 = vote(client, "undoer", s0, "A", "A", "undo-0001").json()
        s2 = vote(client, "undoer", s1, "B", "indifferent", "undo-0002").json()
        assert s2["done"] == 2 and s2["last_vote"] == {"vote_id": "undo-0002"}
        u1 = client.post("/api/undo", json={"rater": "undoer", "vote_id": "undo-0002"}).json()
        u2 = client.post("/api/undo", json={"rater": "undoer", "vote_id": "undo-0002"}).json()
        not_last = client.post("/api/undo", json={"rater": "undoer", "vote_id": "undo-0003"})
    # the retry undid nothing more; the undone prompt is next again, with the same sides
    assert u1["done"] == u2["done"] == 1 and u1["undone"] == {
        "prompt_index": s1["item"]["prompt_index"]
    }
    assert u1["item"] == s1["item"] and u1["last_vote"] == {"vote_id": "undo-0001"}
    assert not_last.status_code == 409
    stored = rows(
        server.db, "SELECT vote_id, undone_at FROM votes WHERE rater = 'undoer' ORDER BY id"
    )
    assert [r["vote_id"] for r in stored] == ["undo-0001", "undo-0002"]
    assert stored[0]["undone_at"] is None and stored[1]["undone_at"] is not None


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        ({"headers": {"Host": "evil.example"}, "json": {}}, 400, "invalid_host"),
        ({"content": b"{}", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"json": {"rater": "x" * 2000}}, 413, "request_too_large"),
        ({"json": {"rater": "ok", "extra": 1}}, 400, "unknown_parameter"),
        ({"json": {"rater": " ", "vote_id": "abcdefgh"}}, 400, "invalid_value"),
        ({"json": {"rater": "ok", "vote_id": "abcdefgh", "prompt_index": 99,
                   "quality": "A", "alignment": "A"}}, 400, "invalid_value"),
        ({"json": {"rater": "ok", "vote_id": "abc"}}, 400, "invalid_value"),
    ],
)  # fmt: skip
def test_bad_requests_get_clear_errors(server, request_kwargs, status, code):
    response = httpx.post(server.url + "/api/vote", **request_kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_a_bad_answer_or_unknown_image_is_refused(server):
    with httpx.Client(base_url=server.url) as client:
        state = client.get("/api/next", params={"rater": "picky"}).json()
        bad = vote(client, "picky", state, "left", "A", "picky-001")
        assert bad.status_code == 400 and "quality" in bad.json()["error"]["message"]
        assert client.get("/images/" + "x" * 24 + ".png").status_code == 404
        assert client.get("/api/next", params={"rater": "\x1b[31m"}).status_code == 400
    assert rows(server.db, "SELECT * FROM votes WHERE rater = 'picky'") == []


def test_results_are_the_shares_of_the_stored_votes_with_wilson_intervals(server):
    answers = ["A", "B", "indifferent", "A"]
    with httpx.Client(base_url=server.url) as client:
        for rater in ("res-1", "res-2"):
            state = client.get("/api/next", params={"rater": rater}).json()
            for i, answer in enumerate(answers):
                state = vote(
                    client, rater, state, answer, answers[-1 - i], f"{rater}-{i:04d}"
                ).json()
        summary = client.get("/results.json").json()
        table = list(csv.DictReader(io.StringIO(client.get("/results.csv").text)))
        page = client.get("/results").text
    active = rows(server.db, "SELECT * FROM votes WHERE undone_at IS NULL")
    for question in ("quality", "alignment"):
        for category in ("all", "Colors", "Counting"):
            votes = [v for v in active if category in ("all", v["category"])]
            for choice in ("alpha", "beta", "indifferent"):
                count = sum(
                    (v[question] == "indifferent") if choice == "indifferent"
                    else (v["left_model" if v[question] == "A" else "right_model"] == choice
                          and v[question] != "indifferent")
                    for v in votes
                )  # fmt: skip
                low, high = wilson_interval(count, len(votes))
                block = summary["questions"][question]
                block = block["all"] if category == "all" else block["categories"][category]
                got = (
                    block["indifferent"] if choice == "indifferent" else block["preferred"][choice]
                )
                assert got["count"] == count and block["votes"] == len(votes)
                assert got["ci95"] == pytest.approx([low, high])
                (line,) = [r for r in table if (r["question"], r["category"], r["choice"])
                           == (question, category, choice)]  # fmt: skip
                assert int(line["count"]) == count and int(line["votes"]) == len(votes)
                assert float(line["rate"]) == pytest.approx(count / len(votes), abs=1e-6)
    assert summary["votes"] == len(active) and {"res-1", "res-2"} <= set(summary["raters"])
    assert "<svg" in page and "<table id='rates-quality'>" in page


def test_votes_csv_is_the_whole_table(server):
    exported = list(csv.DictReader(io.StringIO(httpx.get(server.url + "/votes.csv").text)))
    stored = rows(server.db)
    assert len(exported) == len(stored) > 0
    for line, row in zip(exported, stored, strict=True):
        assert line == {k: "" if v is None else str(v) for k, v in row.items()}


def test_strip_png_text_keeps_every_other_byte(drawbench_run):
    path = next((drawbench_run / "images" / "alpha").glob("*.png"))
    data = path.read_bytes()
    stripped = strip_png_text(data)
    assert len(stripped) < len(data) and np.array_equal(pixels(stripped), pixels(data))
    assert strip_png_text(stripped) == stripped


def test_rate_cli_refuses_unknown_models_and_runs_without_a_manifest(
    drawbench_run, tmp_path, capsys
):
    code, _, err = run(["rate", str(drawbench_run), "--models", "alpha", "gamma"], capsys)
    assert code == 2 and err.count("\n") == 1 and "alpha, beta" in err
    code, _, err = run(["rate", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and "openimagen eval drawbench" in err
    bad_db = tmp_path / "not.sqlite"
    bad_db.write_bytes(b"this is not a database" * 100)
    code, _, err = run(["rate", str(drawbench_run), "--db", str(bad_db)], capsys)
    assert code == 2 and err.count("\n") == 1 and "--db" in err
