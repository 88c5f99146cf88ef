"""Kernel tests run the Triton kernels in the interpreter on CPU.

TRITON_INTERPRET must be set before a kernel is decorated; kbit.kernels imports triton lazily
(only in kbit.kernels.triton_kernels), so setting it here, at collection, is early enough even in
one pytest process with other parts' tests. With a GPU, KBIT_TEST_GPU=1 runs them compiled.
"""

import os

import pytest
import torch

if os.environ.get("KBIT_TEST_GPU") != "1":
    os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture(scope="session")
def device() -> str:
    return "cuda" if os.environ.get("KBIT_TEST_GPU") == "1" and torch.cuda.is_available() else "cpu"

