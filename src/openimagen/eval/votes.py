"""Blind pairwise votes in SQLite: one row per vote, safe against crashes and double submits.

The rating protocol is the paper's (Saharia et al., 2022, section 4.3 and appendix): for a
prompt a rater sees two sets of images, set A on the left and set B on the right, drawn by
two models in a random order, and answers two questions, each with "A", "B" or
"indifferent":

* ``quality``: which set of images is of higher quality?
* ``alignment``: which set of images better represents the text caption?

Tables (the file is opened in WAL mode with ``synchronous=FULL``, so a vote whose answer
reached the page survives a crash or a power cut):

* ``sides``: the order a rater sees a pair in (``left_model`` is set A), drawn at random the
  first time the rater is shown the prompt and kept, so a reload shows the same sides;
* ``votes``: one row per vote with both answers, the sides it was given under and a
  ``vote_id`` chosen by the page. Submitting the same ``vote_id`` again changes nothing
  (a double click or a retried request); undoing sets ``undone_at`` instead of deleting, so
  the file keeps every vote ever cast. At most one vote per rater, pair and prompt is active
  (a partial unique index).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import random
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from openimagen.errors import InvalidArgumentError, OpenImagenError

ANSWERS = ("A", "B", "indifferent")
QUESTIONS = ("quality", "alignment")
MAX_RATER_CHARS = 64
VOTE_COLUMNS = (
    "id", "vote_id", "rater", "pair", "prompt_index", "prompt", "category", "left_model",
    "right_model", "quality", "alignment", "created_at", "undone_at",
)  # fmt: skip

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sides (
    rater TEXT NOT NULL,
    pair TEXT NOT NULL,
    prompt_index INTEGER NOT NULL,
    left_model TEXT NOT NULL,
    right_model TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (rater, pair, prompt_index)
);
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vote_id TEXT NOT NULL UNIQUE,
    rater TEXT NOT NULL,
    pair TEXT NOT NULL,
    prompt_index INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    category TEXT NOT NULL,
    left_model TEXT NOT NULL,
    right_model TEXT NOT NULL,
    quality TEXT NOT NULL CHECK (quality IN ('A', 'B', 'indifferent')),
    alignment TEXT NOT NULL CHECK (alignment IN ('A', 'B', 'indifferent')),
    created_at TEXT NOT NULL,
    undone_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_vote
    ON votes (rater, pair, prompt_index) WHERE undone_at IS NULL;
"""


class VoteConflictError(OpenImagenError):
    """A vote that contradicts the votes already stored (HTTP 409 on the page)."""


def pair_key(models: Sequence[str]) -> str:
    """The name of an unordered pair of models: ``"a|b"`` with the labels sorted."""
    return "|".join(sorted(models))


def check_rater(name: Any) -> str:
    """A rater's name, stripped: 1-64 printable characters."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError("rater", name, "a non-empty name")
    name = name.strip()
    if len(name) > MAX_RATER_CHARS or not name.isprintable():
        raise InvalidArgumentError(
            "rater", name, f"1 to {MAX_RATER_CHARS} printable characters", "Use a shorter name."
        )
    return name


def rater_order(rater: str, pair: str, prompt_indices: Sequence[int]) -> list[int]:
    """The order a rater sees the prompts in: shuffled per rater, the same after a reload."""
    seed = int.from_bytes(hashlib.sha256(f"{pair}\n{rater}".encode()).digest()[:8], "big")
    order = sorted(prompt_indices)
    random.Random(seed).shuffle(order)
    return order


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


class VoteStore:
    """The votes of one SQLite file (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.connect() as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise InvalidArgumentError(
                "--db",
                str(path),
                "a new path or an SQLite file of votes",
                f"Opening it failed: {exc}.",
            ) from exc

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own (one per request thread); closed on exit."""
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA synchronous=FULL")
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once (``BEGIN IMMEDIATE``): no two writers interleave."""
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def sides(self, rater: str, pair: Sequence[str], prompt_index: int) -> tuple[str, str]:
        """(left model, right model) for this rater and prompt; drawn at random once, kept."""
        key = pair_key(pair)
        first, second = sorted(pair)
        if secrets.randbelow(2):
            first, second = second, first
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO sides VALUES (?, ?, ?, ?, ?, ?)",
                (rater, key, prompt_index, first, second, _now()),
            )
            row = conn.execute(
                "SELECT left_model, right_model FROM sides "
                "WHERE rater = ? AND pair = ? AND prompt_index = ?",
                (rater, key, prompt_index),
            ).fetchone()
        return row["left_model"], row["right_model"]

    def record(
        self,
        *,
        vote_id: str,
        rater: str,
        pair: Sequence[str],
        prompt_index: int,
        prompt: str,
        category: str,
        quality: str,
        alignment: str,
    ) -> tuple[dict[str, Any], bool]:
        """Store a vote; returns (the row, whether it is new). The sides are the stored ones.

        The same ``vote_id`` with the same answers returns the stored row (not new); with
        other answers, or a second vote on a prompt the rater has an active vote for, it is
        a :class:`VoteConflictError`.
        """
        for name, value in (("quality", quality), ("alignment", alignment)):
            if value not in ANSWERS:
                raise InvalidArgumentError(name, value, "'A', 'B' or 'indifferent'")
        key = pair_key(pair)
        with self.transaction() as conn:
            old = conn.execute("SELECT * FROM votes WHERE vote_id = ?", (vote_id,)).fetchone()
            if old is not None:
                same = (old["rater"], old["pair"], old["prompt_index"], old["quality"],
                        old["alignment"]) == (rater, key, prompt_index, quality, alignment)  # fmt: skip
                if not same:
                    raise VoteConflictError(
                        f"vote_id {vote_id!r} was already used for another vote; "
                        "reload the page to get a new one"
                    )
                return dict(old), False
            sides = conn.execute(
                "SELECT left_model, right_model FROM sides "
                "WHERE rater = ? AND pair = ? AND prompt_index = ?",
                (rater, key, prompt_index),
            ).fetchone()
            if sides is None:
                raise VoteConflictError(
                    f"prompt {prompt_index} was never shown to {rater!r}; reload the page"
                )
            try:
                cursor = conn.execute(
                    "INSERT INTO votes (vote_id, rater, pair, prompt_index, prompt, category, "
                    "left_model, right_model, quality, alignment, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (vote_id, rater, key, prompt_index, prompt, category, sides["left_model"],
                     sides["right_model"], quality, alignment, _now()),
                )  # fmt: skip
            except sqlite3.IntegrityError as exc:  # the partial unique index
                raise VoteConflictError(
                    f"{rater!r} has already voted on prompt {prompt_index}; undo that vote "
                    "first to change it"
                ) from exc
            row = conn.execute("SELECT * FROM votes WHERE id = ?", (cursor.lastrowid,)).fetchone()
        return dict(row), True

    def undo_last(
        self, rater: str, pair: Sequence[str], vote_id: str | None = None
    ) -> dict[str, Any] | None:
        """Undo the rater's last active vote on this pair; returns it (None: nothing to undo).

        With ``vote_id``, only that vote is undone, and undoing it a second time returns it
        again without undoing another (a retried request must not undo two votes).
        """
        key = pair_key(pair)
        with self.transaction() as conn:
            if vote_id is not None:
                old = conn.execute(
                    "SELECT * FROM votes WHERE vote_id = ? AND rater = ? AND pair = ?",
                    (vote_id, rater, key),
                ).fetchone()
                if old is not None and old["undone_at"] is not None:
                    return dict(old)
            last = conn.execute(
                "SELECT * FROM votes WHERE rater = ? AND pair = ? AND undone_at IS NULL "
                "ORDER BY id DESC LIMIT 1",
                (rater, key),
            ).fetchone()
            if last is None:
                return None
            if vote_id is not None and last["vote_id"] != vote_id:
                raise VoteConflictError(
                    f"vote {vote_id!r} is not {rater!r}'s last vote; only the last one can be "
                    "undone (reload the page)"
                )
            conn.execute("UPDATE votes SET undone_at = ? WHERE id = ?", (_now(), last["id"]))
            row = conn.execute("SELECT * FROM votes WHERE id = ?", (last["id"],)).fetchone()
        return dict(row)

    def votes(
        self, pair: Sequence[str] | None = None, *, rater: str | None = None, active: bool = True
    ) -> list[dict[str, Any]]:
        """Votes in the order cast; ``active`` False includes undone ones."""
        where, params = [], []
        if pair is not None:
            where.append("pair = ?")
            params.append(pair_key(pair))
        if rater is not None:
            where.append("rater = ?")
            params.append(rater)
        if active:
            where.append("undone_at IS NULL")
        sql = "SELECT * FROM votes" + (" WHERE " + " AND ".join(where) if where else "")
        with self.connect() as conn:
            return [dict(r) for r in conn.execute(sql + " ORDER BY id", params)]
