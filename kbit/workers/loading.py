"""Load a model and its tokenizer once per group: bundled ids (`kbit/<family>/<size>`, built on
first use), local folders, or Hugging Face ids at a revision, through AutoModelForCausalLM /
AutoTokenizer. `MODEL_LOADS` counts loads per model id, so callers and tests can check that a
group loads its model exactly once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from kbit.workers.bundled import family
from kbit.workers.errors import ModelNotFound, ModelUnavailable
from kbit.spec.evalspec import ModelSpec

MODEL_LOADS: Counter[str] = Counter()

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str  # the folder or Hugging Face id it was loaded from
    commit: str | None  # the resolved Hugging Face commit, when known

    @property
    def device(self) -> torch.device:
        return self.model.device


def pick_device(requested: str) -> str:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelNotFound("ModelSpec.device='cuda' but no CUDA GPU is visible here; use device='auto' or 'cpu'")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def pick_dtype(requested: str, device: str):
    """'auto' keeps the checkpoint's dtype on a GPU and uses float32 on CPU (half-precision matmuls
    are slow or missing there)."""
    if requested != "auto":
        return _DTYPES[requested]
    return "auto" if device == "cuda" else torch.float32


def resolve_source(spec: ModelSpec) -> tuple[str, str | None]:
    """(folder or HF id, revision to pass): bundled ids are built if needed; folders take no revision."""
    if family.is_bundled(spec.model):
        try:
            return str(family.ensure_model(spec.model)), None
        except family.UnknownBundledModel as exc:
            raise ModelNotFound(str(exc)) from None
    path = Path(spec.model).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFound(f"model folder {str(path)!r} has no config.json; point at a save_pretrained folder")
        return str(path), None
    if spec.model.startswith(("/", ".", "~")):
        raise ModelNotFound(f"model path {spec.model!r} does not exist; check the path")
    return spec.model, spec.revision


NETWORK_ERRORS = {"ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "ConnectError", "ReadError",
                  "RemoteDisconnected", "NewConnectionError", "MaxRetryError", "ProtocolError", "HfHubHTTPError"}


def is_network_failure(exc: BaseException) -> bool:
    """Whether a loading error was caused by the network (anywhere in its chain of causes):
    transformers wraps requests' / httpx's connection errors in a plain OSError."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__name__ in NETWORK_ERRORS:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            return status is None or status >= 500 or status == 429  # 401/403/404 are permanent
        exc = exc.__cause__ or exc.__context__
    return False


def load_model(spec: ModelSpec) -> LoadedModel:
    """The model (eval mode, on its device) and tokenizer of `spec`; ModelNotFound says why not."""
    source, revision = resolve_source(spec)
    device = pick_device(spec.device)
    kwargs = {"revision": revision} if revision else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=pick_dtype(spec.dtype, device), **kwargs)
    except (OSError, ValueError) as exc:  # hub errors (unknown repo, revision, offline miss) are OSErrors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = f" at revision {revision!r}" if revision else ""
        if is_network_failure(exc):
            raise ModelUnavailable(
                f"model {spec.model!r}{where} could not be fetched ({first}); the network or the Hugging Face hub "
                "failed, so the run is retried"
            ) from None
        raise ModelNotFound(
            f"model {spec.model!r}{where} could not be loaded ({first}); check the Hugging Face id, revision or "
            "local path, and when offline that it is in the local Hugging Face cache"
        ) from None
    MODEL_LOADS[spec.model] += 1
    model.to(device).eval()
    return LoadedModel(spec, model, tokenizer, source, getattr(model.config, "_commit_hash", None))
