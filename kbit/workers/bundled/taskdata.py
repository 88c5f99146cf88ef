"""Data of the bundled lm-eval tasks, made from the held-out chapters only (never trained on):

- kbit_heldout: whole chapters, scored by rolling log-likelihood (perplexity, bits per byte);
- kbit_lastword: LAMBADA-style: the previous verse plus a verse without its last word; the model
  must produce that word greedily. Only verses whose last word already occurs in the context are
  kept, so the word is predictable from context (as LAMBADA filters for);
- kbit_choice: multiple-choice continuation: the previous verse plus the first part of a verse (up
  to a comma, colon or semicolon near its middle); pick the true rest of the verse among three
  copies of it with two words swapped (chance 25%). The choices hold the same words, so a model
  cannot win on word frequencies alone: it must judge which continuation is English in context.
  (Rests of other verses as distractors leave models of this size at chance.)

Written once as JSON lines under `$KBIT_HOME/tasks/v<N>/`, deterministically, behind a file lock.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

from filelock import FileLock

from kbit.workers.bundled import corpus
from kbit.workers.bundled.family import kbit_home

TASK_DATA_VERSION = 2
SEED = 1234
N_HELDOUT_CHAPTERS = 24
N_LASTWORD = 400
N_CHOICE = 300
N_DISTRACTORS = 3
MIN_CHOICE_WORDS = 6
MAX_CHOICE_VERSE = 200  # characters: keeps every ending well inside a small model's context
TASKS = ("kbit_heldout", "kbit_lastword", "kbit_choice")
_LAST_WORD = re.compile(r"^(.*\S)\s+([A-Za-z]{3,})[^A-Za-z]*$")
_SPLIT_AT = re.compile(r"[,;:] ")


def task_data_dir(home: str | os.PathLike | None = None) -> Path:
    return kbit_home(home) / "tasks" / f"v{TASK_DATA_VERSION}"


def _pairs(chapters):
    """(previous verse, verse) for every verse after the first of each chapter."""
    for chapter in chapters:
        for prev, verse in zip(chapter.verses, chapter.verses[1:]):
            yield prev, verse


def heldout_docs(chapters) -> list[dict]:
    step = max(1, len(chapters) // N_HELDOUT_CHAPTERS)
    picked = chapters[::step][:N_HELDOUT_CHAPTERS]
    return [{"title": f"{c.book} {c.number}", "text": c.text} for c in picked]


def lastword_docs(chapters) -> list[dict]:
    docs = []
    for prev, verse in _pairs(chapters):
        match = _LAST_WORD.match(verse)
        if not match:
            continue
        head, word = match.groups()
        context = f"{prev}\n{head}"
        if re.search(rf"\b{re.escape(word)}\b", context, flags=re.IGNORECASE):
            docs.append({"context": context, "target": " " + word})
    random.Random(SEED).shuffle(docs)
    return docs[:N_LASTWORD]


def _split_verse(verse: str) -> tuple[str, str] | None:
    cuts = [m.end() - 1 for m in _SPLIT_AT.finditer(verse) if 0.3 <= m.end() / len(verse) <= 0.7]
    if not cuts:
        return None
    middle = min(cuts, key=lambda c: abs(c - len(verse) / 2))
    return verse[:middle], verse[middle:]  # the rest keeps its leading space


def _swapped(ending: str, rng: random.Random) -> str:
    """`ending` with two different words at random places swapped (spacing and punctuation kept)."""
    words = ending.split(" ")
    while True:
        i, j = sorted(rng.sample(range(1, len(words)), 2))  # words[0] is "" (the leading space)
        if words[i].lower() != words[j].lower():
            words[i], words[j] = words[j], words[i]
            return " ".join(words)


def choice_docs(chapters) -> list[dict]:
    items = []
    for prev, verse in _pairs(chapters):
        parts = _split_verse(verse) if len(verse) <= MAX_CHOICE_VERSE else None
        if parts and len(set(parts[1].lower().split())) >= MIN_CHOICE_WORDS:
            items.append((f"{prev}\n{parts[0]}", parts[1]))
    rng = random.Random(SEED)
    rng.shuffle(items)
    docs = []
    for context, ending in items[:N_CHOICE]:
        choices = {ending}
        while len(choices) < N_DISTRACTORS + 1:
            choices.add(_swapped(ending, rng))
        ordered = sorted(choices)
        rng.shuffle(ordered)
        docs.append({"context": context, "choices": ordered, "label": ordered.index(ending)})
    return docs


def _write_jsonl(path: Path, docs: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(d) + "\n" for d in docs))
    os.replace(tmp, path)


def ensure_task_data(home: str | os.PathLike | None = None) -> Path:
    """The folder holding kbit_<task>.jsonl for every bundled task, written on first use."""
    folder = task_data_dir(home)
    if all((folder / f"{t}.jsonl").exists() for t in TASKS):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock")):
        _, heldout = corpus.split()
        makers = {"kbit_heldout": heldout_docs, "kbit_lastword": lastword_docs, "kbit_choice": choice_docs}
        for task, make in makers.items():
            if not (folder / f"{task}.jsonl").exists():
                _write_jsonl(folder / f"{task}.jsonl", make(heldout))
    return folder


def load_docs(task: str, home: str | os.PathLike | None = None) -> list[dict]:
    """The documents of bundled task `task`."""
    path = ensure_task_data(home) / f"{task}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]
