"""Kernel tests run the Triton kernels in the interpreter on CPU.

TRITON_INTERPRET must be set before a kernel is decorated; kbit.kernels imports triton lazily
(only in kbit.kernels.triton_kernels), so setting it here, at collection, is early enough even in
one pytest process with other parts' tests. With a GPU, KBIT_TEST_GPU=1 runs them compiled on CUDA (and
test_kernels_triton.py widens its grid: every k x data type x input dtype).
"""

import os

import pytest
import torch

from kernels_helpers import compiled_on_gpu

if not compiled_on_gpu():
    os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture(scope="session")
def device() -> str:
    """Where the kernel tests put their tensors: CUDA with KBIT_TEST_GPU=1, else the CPU (interpreter)."""
    if not compiled_on_gpu():
        return "cpu"
    if not torch.cuda.is_available():
        pytest.fail("KBIT_TEST_GPU=1 but torch sees no CUDA device; unset it to run the kernels in the interpreter",
                    pytrace=False)
    return "cuda"

