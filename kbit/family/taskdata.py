"""Data of the bundled lm-eval tasks, made from the held-out chapters only (never trained on).
Both accuracy tasks are four-way choices (chance 25%), so their mean has one chance level too:

- kbit_heldout: whole chapters, scored by rolling log-likelihood (perplexity, bits per byte);
- kbit_lastword: LAMBADA-style: the end of the previous verse plus a verse without its last word,
  which occurs earlier in that context (LAMBADA's filter); the word against three other words of
  the context that also end verses in the training text, so copying any word back is not enough;
- kbit_choice: the previous verse plus the first part of a verse (up to a comma, colon or
  semicolon near its middle); the true rest against three copies of it with one word replaced by
  a word that follows the same previous word in the training text, but less often than the true
  word does. A distractor reads fluently word by word, so telling it apart takes the words after
  it and the sense of the verse, which is what larger members learn. (Rests of other verses as
  distractors leave models of this size at chance; two swapped words let every member score
  above 0.9; the most frequent successors as substitutes put the smallest member below chance.)

Distractors are drawn from word statistics of the training chapters only. Documents are at most
MAX_DOC_CHARS long, since every config of a sweep evaluates all of them.
Written once as JSON lines under `$KBIT_HOME/tasks/v<N>/`, deterministically, behind a file lock.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import random
import re
import typing
from pathlib import Path

from filelock import FileLock

from kbit import settings
from kbit.family import corpus

TASK_DATA_VERSION = 3
SEED = 1234
N_HELDOUT_CHAPTERS = 24
N_LASTWORD = 400
N_CHOICE = 400
N_DISTRACTORS = 3
MIN_CHOICE_WORDS = 6
# Characters of a document (context and answer): short documents keep evaluation, which every
# config of a sweep repeats, cheap (about 4 characters a token) and inside a 128-token context.
MAX_DOC_CHARS = 220
TASKS = ("kbit_heldout", "kbit_lastword", "kbit_choice")
_LAST_WORD = re.compile(r"^(.*\S)\s+([A-Za-z]{3,})[^A-Za-z]*$")
_SPLIT_AT = re.compile(r"[,;:] ")
_WORD = re.compile(r"[A-Za-z]+")
_PUNCT = ".,;:?!'()"
MIN_FINAL_COUNT = 2  # a lastword distractor must end at least this many training verses
SUBSTITUTE_RANK = 8  # a choice distractor's word is among the 8 ranked just below the true one


class TrainingStats(typing.NamedTuple):
    successors: dict[str, tuple[str, ...]]  # lower-cased word -> the words after it, most frequent
    # first, each in its most frequent spelling
    finals: frozenset[str]  # lower-cased words that end verses


def task_data_dir(home: str | os.PathLike | None = None) -> Path:
    return settings.kbit_home(home) / "tasks" / f"v{TASK_DATA_VERSION}"


def _pairs(chapters):
    """(previous verse, verse) for every verse after the first of each chapter."""
    for chapter in chapters:
        for prev, verse in zip(chapter.verses, chapter.verses[1:]):
            yield prev, verse


def heldout_docs(chapters) -> list[dict]:
    step = max(1, len(chapters) // N_HELDOUT_CHAPTERS)
    picked = chapters[::step][:N_HELDOUT_CHAPTERS]
    return [{"title": f"{c.book} {c.number}", "text": c.text} for c in picked]


@functools.lru_cache(maxsize=1)
def training_stats() -> TrainingStats:
    """Word statistics of the training chapters only (held-out text never shapes a distractor)."""
    train, _ = corpus.split()
    successors: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    spellings: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    final: collections.Counter = collections.Counter()
    for chapter in train:
        for verse in chapter.verses:
            words = _WORD.findall(verse)
            for a, b in zip(words, words[1:]):
                successors[a.lower()][b.lower()] += 1
                spellings[b.lower()][b] += 1
            if (match := _LAST_WORD.match(verse)):
                final[match.group(2).lower()] += 1
    spelled = {w: c.most_common(1)[0][0] for w, c in spellings.items()}  # "lord" -> "LORD"
    return TrainingStats({a: tuple(spelled[w] for w in sorted(c, key=lambda w: (-c[w], w))) for a, c in successors.items()},
                         frozenset(w for w, n in final.items() if n >= MIN_FINAL_COUNT))


def lastword_docs(chapters) -> list[dict]:
    """Verses whose last word occurs earlier in the context; the word against three other words of
    the context that also end verses in the training text (so copying any context word is not enough)."""
    rng = random.Random(SEED)
    items = []
    for prev, verse in _pairs(chapters):
        match = _LAST_WORD.match(verse)
        if not match:
            continue
        head, word = match.groups()
        context = _tail(f"{prev}\n{head}", MAX_DOC_CHARS - len(word) - 1)
        others = _other_finals(context, word)
        if word.lower() in {w.lower() for w in _WORD.findall(context)}:
            if len(others) >= N_DISTRACTORS:
                items.append((context, word, others))
    rng.shuffle(items)
    docs = []
    for context, word, others in items[:N_LASTWORD]:
        choices = [" " + w for w in [word, *rng.sample(others, N_DISTRACTORS)]]
        rng.shuffle(choices)
        docs.append({"context": context, "choices": choices, "label": choices.index(" " + word)})
    return docs


def _other_finals(context: str, word: str) -> list[str]:
    """The distinct words of `context` (first spelling, sorted) other than `word` that end training verses."""
    finals, found = training_stats().finals, {}
    for w in _WORD.findall(context):
        if len(w) >= 3 and w.lower() != word.lower() and w.lower() in finals:
            found.setdefault(w.lower(), w)
    return sorted(found.values())


def _tail(text: str, limit: int) -> str:
    """The last `limit` characters of `text` at most, starting at a word."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    return text[cut:].split(" ", 1)[-1] if text[cut - 1] not in " \n" else text[cut:]


def _split_verse(verse: str) -> tuple[str, str] | None:
    cuts = [m.end() - 1 for m in _SPLIT_AT.finditer(verse) if 0.3 <= m.end() / len(verse) <= 0.7]
    if not cuts:
        return None
    middle = min(cuts, key=lambda c: abs(c - len(verse) / 2))
    return verse[:middle], verse[middle:]  # the rest keeps its leading space


def _substitutes(ending: str) -> list[tuple[int, str]]:
    """(word index, replacement) for every word of `ending` that can be swapped for another word
    seen after the same previous word in training, so the distractor reads fluently locally."""
    successors = training_stats().successors
    words = ending.split(" ")
    out = []
    for i in range(2, len(words)):  # words[0] is "" (the leading space); words[1] follows the cut
        prev, word = _core(words[i - 1]), _core(words[i])
        if not word or not prev or prev != words[i - 1].lower():
            continue  # punctuation between the two, or inside a word: leave it
        ranked = successors.get(prev, ())
        lowered = [w.lower() for w in ranked]
        if word not in lowered:
            continue
        rank = lowered.index(word)
        # only words that follow `prev` less often than the true word: a model that sees just the
        # previous word would prefer the truth; rejecting them takes the words after, and the sense
        for alt in ranked[rank + 1 : rank + 1 + SUBSTITUTE_RANK]:
            if len(alt) >= 2:
                out.append((i, alt))
    return out


def _core(token: str) -> str:
    return token.lower().rstrip(_PUNCT) if _WORD.fullmatch(token.rstrip(_PUNCT)) else ""


def _replace(ending: str, index: int, alt: str) -> str:
    words = ending.split(" ")
    word = words[index]
    core = word.rstrip(_PUNCT)
    words[index] = alt + word[len(core):]
    return " ".join(words)


def choice_docs(chapters) -> list[dict]:
    """The previous verse and the first part of a verse; the true rest against three copies of it
    with one word replaced by a word that follows the same previous word in training."""
    rng = random.Random(SEED)
    items = []
    for prev, verse in _pairs(chapters):
        parts = _split_verse(verse) if len(prev) + 1 + len(verse) <= MAX_DOC_CHARS else None
        if parts and len(parts[1].split()) >= MIN_CHOICE_WORDS:
            subs = _substitutes(parts[1])
            if len({i for i, _ in subs}) >= N_DISTRACTORS:
                items.append((f"{prev}\n{parts[0]}", parts[1], subs))
    rng.shuffle(items)
    docs = []
    for context, ending, subs in items[:N_CHOICE]:
        positions = rng.sample(sorted({i for i, _ in subs}), N_DISTRACTORS)
        choices = [ending] + [_replace(ending, i, rng.choice([a for j, a in subs if j == i])) for i in positions]
        rng.shuffle(choices)
        docs.append({"context": context, "choices": choices, "label": choices.index(ending)})
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


def chance(task: str, home: str | os.PathLike | None = None) -> float:
    """The expected accuracy of a uniform guess on multiple-choice task `task`."""
    docs = load_docs(task, home)
    return sum(1 / len(d["choices"]) for d in docs) / len(docs)
