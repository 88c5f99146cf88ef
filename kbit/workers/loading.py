"""Load a model and its tokenizer once per group: bundled ids (`kbit/<family>/<size>`, built on
first use), local folders, or Hugging Face ids at a revision, through AutoModelForCausalLM /
AutoTokenizer, in the spec's dtype, on one device or spread over the GPUs (`device_map`).
`MODEL_LOADS` counts loads per model id, so callers and tests can check that a group loads its
model exactly once.

Every way loading fails becomes one typed error (`load_failure`), read from the exception's chain
of causes (transformers wraps the hub's errors in a plain OSError): no such repository, folder or
revision, or offline and not cached -> ModelNotFound; gated or private -> ModelGated; the network
or the hub failing -> ModelUnavailable (transient: the run is retried); out of memory ->
OutOfMemory; an architecture transformers cannot load -> ModelUnsupported.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from huggingface_hub import constants as hub_constants
from huggingface_hub import try_to_load_from_cache
from huggingface_hub.errors import (
    GatedRepoError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from kbit.family import members, shipped
from kbit.sweeps.evalspec import ModelSpec
from kbit.sweeps.modelids import is_local_path
from kbit.workers.errors import (
    ModelGated,
    ModelNotFound,
    ModelUnavailable,
    ModelUnsupported,
    OutOfMemory,
    RunError,
    is_out_of_memory,
)

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
    if members.is_bundled(spec.model):
        try:
            return str(members.ensure_model(spec.model)), None
        except (members.UnknownBundledModel, shipped.ShippedWeightsCorrupt) as exc:
            raise ModelNotFound(str(exc)) from None
    path = Path(spec.model).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFound(f"model folder {str(path)!r} has no config.json; point at a save_pretrained folder")
        if spec.revision != "main":
            raise ModelNotFound(f"model {spec.model!r} is a local folder, so revision {spec.revision!r} cannot apply; "
                                "point at the folder that holds that revision and leave revision out")
        return str(path), None
    if is_local_path(spec.model):
        raise ModelNotFound(f"model path {spec.model!r} does not exist; check the path")
    return spec.model, spec.revision


NETWORK_ERRORS = {"ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "ConnectError", "ReadError",
                  "RemoteDisconnected", "NewConnectionError", "MaxRetryError", "ProtocolError", "HfHubHTTPError"}


def causes(exc: BaseException | None):
    """The exception and its chain of causes, each once."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _status(exc: BaseException) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


def is_network_failure(exc: BaseException) -> bool:
    """Whether a loading error was caused by the network (anywhere in its chain of causes):
    transformers wraps requests' / httpx's connection errors in a plain OSError. Offline mode
    (HF_HUB_OFFLINE) is a setting, not a failure: retrying cannot help."""
    for cause in causes(exc):
        if isinstance(cause, OfflineModeIsEnabled):
            continue
        if isinstance(cause, (ConnectionError, TimeoutError)) or type(cause).__name__ in NETWORK_ERRORS:
            status = _status(cause)
            return status is None or status >= 500 or status == 429  # 401/403/404 are permanent
    return False


def is_offline() -> bool:
    return bool(hub_constants.HF_HUB_OFFLINE)


UNSUPPORTED = ("does not recognize this architecture", "Unrecognized configuration class", "Unrecognized model in")


def load_failure(exc: BaseException, spec: ModelSpec, revision: str | None, device: str) -> RunError | None:
    """The typed error a failed load means, with the fix in its message (None: not a loading problem)."""
    chain = list(causes(exc))
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    where = f"model {spec.model!r}" + (f" at revision {revision!r}" if revision else "")

    def found(*types) -> bool:
        return any(isinstance(cause, types) for cause in chain)

    if found(GatedRepoError) or any(_status(cause) in (401, 403) for cause in chain):
        return ModelGated(f"{where} is gated or private and this worker may not read it ({first}); accept its "
                          "license on huggingface.co and give the workers a token with access (HF_TOKEN)")
    if found(RevisionNotFoundError):
        return ModelNotFound(f"model {spec.model!r} has no revision {revision!r}; use a branch, tag or commit "
                             "that exists on the Hugging Face hub")
    if found(RepositoryNotFoundError):
        return ModelNotFound(f"{where} could not be loaded: no such Hugging Face repository ({first}); check the id "
                             "(a private repository needs a token)")
    if is_network_failure(exc):
        return ModelUnavailable(f"{where} could not be fetched ({first}); the network or the Hugging Face hub "
                                "failed, so the run is retried")
    if found(LocalEntryNotFoundError, OfflineModeIsEnabled) and is_offline():
        return ModelNotFound(f"{where} could not be loaded: the hub is offline here (HF_HUB_OFFLINE=1) and it is not "
                             "in the local Hugging Face cache; download it into the workers' cache (HF_HOME) "
                             "first, check the revision, or point at a local folder")
    if any(is_out_of_memory(cause) for cause in chain):
        return OutOfMemory(f"{where} does not fit in memory on {device} (dtype {spec.dtype}): {first}; load it in "
                           "fp16 or bf16 (dtype:) or spread it over the GPUs (device_map: auto)")
    if any(marker in text for marker in UNSUPPORTED):
        return ModelUnsupported(f"{where}: transformers {transformers.__version__} cannot load it as a causal "
                                f"language model ({first}); upgrade transformers on the workers or pick another model")
    if isinstance(exc, (OSError, ValueError)):  # hub errors (unknown repo, revision, offline miss) are OSErrors
        return ModelNotFound(f"{where} could not be loaded ({first}); check the Hugging Face id, revision or local "
                             "path, and when offline that it is in the local Hugging Face cache")
    return None


def placement(spec: ModelSpec) -> dict:
    """from_pretrained's placement arguments: a device_map spreads the model while it loads."""
    return {"device_map": spec.device_map} if spec.device_map else {}


def check_placed(model: PreTrainedModel, spec: ModelSpec) -> None:
    """A device_map that offloaded weights to disk leaves them on the meta device: kbit quantizes
    weights in memory, so that model does not fit this worker."""
    offloaded = [name for name, p in model.named_parameters() if p.device.type == "meta"]
    if offloaded:
        raise OutOfMemory(f"model {spec.model!r} does not fit this worker's GPUs and CPU memory: device_map "
                          f"{spec.device_map!r} offloaded {len(offloaded)} weights to disk ({offloaded[0]}, ...); "
                          "use more GPUs or a smaller dtype")


_COMMIT = re.compile(r"[/\\]snapshots[/\\]([0-9a-f]{40})[/\\]")


def resolved_commit(source: str, revision: str | None) -> str | None:
    """The commit a Hugging Face id's revision resolved to (from the local cache), None for folders."""
    if revision is None:
        return None
    try:
        path = try_to_load_from_cache(source, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - provenance only: an unreadable cache leaves the commit unknown
        return None
    match = _COMMIT.search(path) if isinstance(path, str) else None
    return match.group(1) if match else None


def load_model(spec: ModelSpec) -> LoadedModel:
    """The model (eval mode, on its device or spread by its device_map) and tokenizer of `spec`;
    a typed RunError (see `load_failure`) says why not."""
    source, revision = resolve_source(spec)
    device = pick_device(spec.device)
    kwargs = {"revision": revision} if revision else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=pick_dtype(spec.dtype, device), **placement(spec), **kwargs)
        if not spec.device_map:
            model.to(device)
    except Exception as exc:  # noqa: BLE001 - every loading failure gets its type; others pass through
        error = load_failure(exc, spec, revision, device)
        if error is None:
            raise
        raise error from None
    check_placed(model, spec)
    MODEL_LOADS[spec.model] += 1
    model.eval()
    return LoadedModel(spec, model, tokenizer, source, resolved_commit(source, revision))
