"""Whether Triton runs in its interpreter (TRITON_INTERPRET=1: the kernels on CPU tensors, one
program after another), read by the backend choice and by the kernels themselves."""

import os


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
