"""The bundled lm-eval tasks: data made from held-out text, and loading through lm-eval's own
TaskManager with the Hugging Face hub and datasets offline."""

import os
import re

from kbit.workers import lmeval
from kbit.workers.bundled import corpus, taskdata


def test_task_data_comes_from_held_out_text(offline_home):
    _, heldout = corpus.split()
    heldout_text = "\n".join(c.text for c in heldout)
    docs = {t: taskdata.load_docs(t) for t in taskdata.TASKS}
    assert len(docs["kbit_heldout"]) == taskdata.N_HELDOUT_CHAPTERS
    assert all(d["text"] in heldout_text for d in docs["kbit_heldout"])
    assert len(docs["kbit_lastword"]) == taskdata.N_LASTWORD
    for d in docs["kbit_lastword"]:
        word = d["target"].strip()
        assert d["target"].startswith(" ") and re.search(rf"\b{word}\b", d["context"], re.IGNORECASE)
        assert (d["context"] + d["target"]) in heldout_text
    assert len(docs["kbit_choice"]) == taskdata.N_CHOICE
    labels = [d["label"] for d in docs["kbit_choice"]]
    assert all(len(d["choices"]) == 4 == len(set(d["choices"])) for d in docs["kbit_choice"])
    assert all((d["context"] + d["choices"][d["label"]]) in heldout_text for d in docs["kbit_choice"])
    # distractors hold the same words in another order: word frequencies cannot give the answer away
    assert all(len({tuple(sorted(c.split(" "))) for c in d["choices"]}) == 1 for d in docs["kbit_choice"])
    assert {0, 1, 2, 3} == set(labels) and max(labels.count(i) for i in range(4)) < 0.4 * len(labels)


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
    assert loaded["tasks"]["kbit_heldout"].config.output_type == "loglikelihood_rolling"
