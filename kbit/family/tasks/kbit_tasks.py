"""lm-eval `custom_dataset` hooks of the bundled tasks (the YAML files here name them with
`!function kbit_tasks.<name>`): each returns the task's documents, generated on first use from the
held-out text by `kbit.family.taskdata`, as a `datasets.DatasetDict` with a `test` split. Nothing
is downloaded, so the tasks load offline."""

from __future__ import annotations

import datasets

from kbit.family.taskdata import load_docs


def _dataset(task: str) -> datasets.DatasetDict:
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(load_docs(task))})


def heldout(**_metadata) -> datasets.DatasetDict:
    return _dataset("kbit_heldout")


def lastword(**_metadata) -> datasets.DatasetDict:
    return _dataset("kbit_lastword")


def choice(**_metadata) -> datasets.DatasetDict:
    return _dataset("kbit_choice")
