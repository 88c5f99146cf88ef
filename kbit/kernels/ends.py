"""The model's ends: its token embedding table and its output head, which a config may quantize
beside the transformer blocks (`QuantConfig.embeddings`, `QuantConfig.head`).

`model_ends` finds them (transformers' get_input_embeddings / get_output_embeddings, else the
largest nn.Embedding and a layer named lm_head) and whether they are one tied tensor;
`check_ends` refuses what cannot be quantized as asked (before anything is replaced);
`quantize_ends_` replaces them: the table by a `QuantEmbedding`, the head by a `QuantLinear`, or,
when tied, by a `TiedQuantLinear` that computes with the embedding's quantized table (stored and
charged once). Positional embeddings stay 16-bit: only the token table is an "embedding" here.

A model with a quantized tied pair gets a `tie_weights` of its own that ties nothing (`hold_tie_`,
undone by `release_tie_`): transformers' would set the head's weight to the embedding's 16-bit
`weight`, which is gone, and lm-eval calls it on every model it wraps; the pair is one tensor already.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from kbit.kernels.config import QuantConfig
from kbit.kernels.embedding import QuantEmbedding, TiedQuantLinear, is_plain_embedding
from kbit.kernels.linear import QuantLinear, is_quantizable

HEAD_NAME = "lm_head"


class EndsError(ValueError):
    """The embeddings or head cannot be quantized as the config asks (kbit.kernels.model makes it a CoverageError)."""


@dataclass(frozen=True)
class Ends:
    """Module names of the token embedding and the output head (None: not found), and whether the
    two hold one tied weight tensor."""

    embedding: str | None
    head: str | None
    tied: bool


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` at the dotted `name` inside `model`."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _accessor(model: nn.Module, method: str) -> nn.Module | None:
    get = getattr(model, method, None)
    if get is None:
        return None
    try:
        return get()
    except (NotImplementedError, AttributeError):
        return None


def _weight(module: nn.Module | None):
    if module is None:
        return None
    if isinstance(module, (QuantEmbedding, QuantLinear)):
        return module.codes if not isinstance(module, TiedQuantLinear) else module.source.codes
    return getattr(module, "weight", None)


def model_ends(model: nn.Module) -> Ends:
    """Where `model`'s token embedding and output head are (quantized already or not)."""
    names = {id(m): n for n, m in model.named_modules()}
    embedding = _accessor(model, "get_input_embeddings")
    if embedding is None or id(embedding) not in names:
        tables = [m for m in model.modules() if isinstance(m, (nn.Embedding, QuantEmbedding))]
        embedding = max(tables, key=lambda m: m.num_embeddings) if tables else None
    head = _accessor(model, "get_output_embeddings")
    if head is None or id(head) not in names:
        head = dict(model.named_modules()).get(HEAD_NAME)
    emb_weight, head_weight = _weight(embedding), _weight(head)
    tied = isinstance(head, TiedQuantLinear) or (
        emb_weight is not None and head_weight is not None
        # the same Parameter, or one storage (meta tensors all have data_ptr 0: not a tie)
        and (emb_weight is head_weight or emb_weight.data_ptr() == head_weight.data_ptr() != 0))
    return Ends(names.get(id(embedding)) if embedding is not None else None,
                names.get(id(head)) if head is not None else None, tied)


def check_ends(model: nn.Module, cfg: QuantConfig, describe: str) -> Ends:
    """The model's ends, or EndsError when `cfg` asks for one that is missing, of a kind kbit cannot
    store quantized, or one half of a tied pair."""
    ends = model_ends(model)
    if not cfg.quantizes_ends:
        return ends
    if cfg.embeddings:
        if ends.embedding is None:
            raise EndsError(f"{describe} has no token embedding (nn.Embedding) to quantize; leave embeddings off")
        module = model.get_submodule(ends.embedding)
        if not is_plain_embedding(module) or module.max_norm is not None:
            raise EndsError(f"{describe}: its token embedding {ends.embedding} is a {type(module).__name__} with a lookup "
                            "of its own, which kbit cannot store quantized; leave embeddings off")
    if cfg.head and (ends.head is None or not is_quantizable(model.get_submodule(ends.head))):
        found = "none" if ends.head is None else type(model.get_submodule(ends.head)).__name__
        raise EndsError(f"{describe} has no output head that is an nn.Linear or Conv1D (found {found}); leave head off")
    if ends.tied and cfg.embeddings != cfg.head:
        raise EndsError(f"{describe}: its token embedding {ends.embedding} and output head {ends.head} are one tied "
                        "tensor; quantize both (quantize: {embeddings: true, head: true}) or neither")
    return ends


def quantize_ends_(model: nn.Module, cfg: QuantConfig, ends: Ends, backend: str = "auto") -> list[str]:
    """Replace the ends `cfg` asks for (checked by `check_ends`); the names replaced."""
    done = []
    table = None
    if cfg.embeddings:
        table = QuantEmbedding(model.get_submodule(ends.embedding), cfg, backend=backend)
        set_module(model, ends.embedding, table)
        done.append(ends.embedding)
    if cfg.head:
        head = model.get_submodule(ends.head)
        if ends.tied:
            bias = None if head.bias is None else head.bias.detach().clone()
            replacement = TiedQuantLinear(head, table, bias, backend=backend)
            hold_tie_(model)
        else:
            replacement = QuantLinear(head, cfg, backend=backend)
        set_module(model, ends.head, replacement)
        done.append(ends.head)
    return done


def _tied_already(*args, **kwargs) -> None:
    """tie_weights of a model whose tied embedding and head kbit holds quantized: one tensor already."""


def hold_tie_(model: nn.Module) -> None:
    """Make `model.tie_weights()` a no-op while its tied ends are quantized (see the module docstring)."""
    if hasattr(model, "tie_weights"):
        object.__setattr__(model, "tie_weights", _tied_already)


def release_tie_(model: nn.Module) -> None:
    """Give `model` its own tie_weights back (the 16-bit pair is restored)."""
    model.__dict__.pop("tie_weights", None)
