"""Kernel tests run the Triton kernels in the interpreter on CPU.

TRITON_INTERPRET=1 is set by tests/conftest.py before any test module is imported (triton fixes at
its import whether its language functions are interpreted, and other parts' imports load it). With
a GPU, KBIT_TEST_GPU=1 runs them compiled on CUDA (and test_kernels_triton.py widens its grid: every
k x data type x input dtype).
"""

import pytest
import torch
from kernels_helpers import compiled_on_gpu


@pytest.fixture(scope="session")
def device() -> str:
    """Where the kernel tests put their tensors: CUDA with KBIT_TEST_GPU=1, else the CPU (interpreter)."""
    if not compiled_on_gpu():
        return "cpu"
    if not torch.cuda.is_available():
        pytest.fail("KBIT_TEST_GPU=1 but torch sees no CUDA device; unset it to run the kernels in the interpreter",
                    pytrace=False)
    return "cuda"

