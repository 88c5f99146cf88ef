"""The bundled lm-eval tasks: data made from held-out text, and loading through lm-eval's own
TaskManager with the Hugging Face hub and datasets offline."""

import os
import re

from kbit.family import corpus, taskdata
from kbit.workers import lmeval


def test_task_data_comes_from_held_out_text(offline_home):
    _, heldout = corpus.split()
    heldout_text = "\n".join(c.text for c in heldout)
    docs = {t: taskdata.load_docs(t) for t in taskdata.TASKS}
    assert len(docs["kbit_heldout"]) == taskdata.N_HELDOUT_CHAPTERS
    assert all(d["text"] in heldout_text for d in docs["kbit_heldout"])
    assert len(docs["kbit_lastword"]) == taskdata.N_LASTWORD and len(docs["kbit_choice"]) == taskdata.N_CHOICE
    for task in ("kbit_lastword", "kbit_choice"):
        for d in docs[task]:
            assert (d["context"] + d["choices"][d["label"]]) in heldout_text
            assert len(d["context"] + d["choices"][d["label"]]) <= taskdata.MAX_DOC_CHARS


def _answer_and_distractors(doc):
    answer = doc["choices"][doc["label"]]
    return answer, [c for i, c in enumerate(doc["choices"]) if i != doc["label"]]


def test_lastword_is_a_choice_among_words_of_the_context(offline_home):
    """LAMBADA's filter (the word occurs in the context); the distractors are other words of the
    same context that end training verses, never the answer in another spelling."""
    finals = taskdata.training_stats().finals
    for d in taskdata.load_docs("kbit_lastword"):
        answer, distractors = _answer_and_distractors(d)
        context_words = {w.lower() for w in re.findall(r"[A-Za-z]+", d["context"])}
        assert len(d["choices"]) == 4 and all(c.startswith(" ") for c in d["choices"])
        assert answer.strip().lower() in context_words
        assert len({c.strip().lower() for c in d["choices"]}) == 4
        assert all(c.strip().lower() in context_words & finals for c in distractors)


def test_choice_distractors_differ_from_the_answer_in_one_less_likely_word(offline_home):
    """Each distractor is the true rest with one word replaced by a word that follows the same
    previous word in training, less often than the true word (so a bigram model prefers the truth)."""
    successors = taskdata.training_stats().successors
    for d in taskdata.load_docs("kbit_choice"):
        answer, distractors = _answer_and_distractors(d)
        assert len(set(d["choices"])) == 4
        true_words = answer.split(" ")
        for distractor in distractors:
            words = distractor.split(" ")
            changed = [i for i, (a, b) in enumerate(zip(true_words, words)) if a != b]
            assert len(words) == len(true_words) and len(changed) == 1
            i = changed[0]
            ranked = [w.lower() for w in successors[true_words[i - 1].lower()]]
            old, new = true_words[i].lower().rstrip(taskdata._PUNCT), words[i].lower().rstrip(taskdata._PUNCT)
            assert new != old and ranked.index(old) < ranked.index(new)


def test_tasks_are_deterministic_with_a_stated_chance(offline_home, tmp_path):
    """The same documents in any KBIT_HOME; four choices each, the answer's place balanced, so a
    uniform guess scores 0.25 as the task YAMLs state."""
    _, heldout = corpus.split()
    for task, make in (("kbit_lastword", taskdata.lastword_docs), ("kbit_choice", taskdata.choice_docs)):
        docs = taskdata.load_docs(task)
        assert make(heldout) == docs == taskdata.load_docs(task, tmp_path)
        assert taskdata.chance(task) == 0.25
        labels = [d["label"] for d in docs]
        assert max(labels.count(i) for i in range(4)) < 0.32 * len(labels) < min(labels.count(i) for i in range(4)) * 1.6


def test_bundled_tasks_load_offline(offline_home):
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert lmeval.BUNDLED_TASKS == ("kbit_choice", "kbit_heldout", "kbit_lastword")
    loaded = lmeval.load_tasks(lmeval.BUNDLED_TASKS, num_fewshot=0, seed=1)
    sizes = {name: len(task.eval_docs) for name, task in loaded["tasks"].items()}
    assert sizes == {"kbit_heldout": taskdata.N_HELDOUT_CHAPTERS, "kbit_lastword": taskdata.N_LASTWORD,
                     "kbit_choice": taskdata.N_CHOICE}
    choice = loaded["tasks"]["kbit_choice"]
    doc = choice.eval_docs[0]
    assert choice.doc_to_text(doc) == doc["context"] and choice.doc_to_choice(doc) == doc["choices"]
    assert choice.config.output_type == "multiple_choice"
    assert loaded["tasks"]["kbit_lastword"].config.output_type == "multiple_choice"
    assert loaded["tasks"]["kbit_heldout"].config.output_type == "loglikelihood_rolling"
