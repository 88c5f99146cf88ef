"""What kbit knows about each transformer architecture, keyed on `config.model_type`.

For every known architecture (`ARCHITECTURES`, the table in docs/kernels.md): where its blocks
are, the kind of each weight matrix in a block (attention q/k/v/o or a fused qkv, mlp
gate/up/down), and for proxy quantization which layer's output units feed each layer's input
dimensions (the paper, §3: the hidden units with the largest weight std in the *producing* layer
select the input dimensions kept in 16 bit). Only names are read here, never weights.

An unknown architecture falls back to module order (`fallback_sources`: the latest earlier layer
whose output width matches, the token embedding for the first readers) with a warning, since
that can pick the wrong producer (a parallel residual, a positional embedding).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from kbit.kernels.linear import in_out_features, is_quantizable

# Which output units of the producing layer feed the reader's inputs, in the reader's input order.
ALL = "all"  # every unit, same order (the widths match)
V_OF_CONCAT_QKV = "v of [q|k|v]"  # fused qkv with outputs [all q | all k | all v] (GPT-2 c_attn)
V_OF_HEADWISE_QKV = "v of per-head [q|k|v]"  # fused qkv with outputs per head [q_h k_h v_h] (BLOOM, GPT-NeoX)
V_GROUPED = "v per kv-head group"  # v_proj with fewer kv heads than query heads (grouped-query attention)


@dataclass(frozen=True)
class Source:
    """The layer whose output units feed a reader's input dimensions.

    where: "block" (the same block), "previous" (the previous block; for the first block, the
    architecture's stream start), "last" (the last block) or "model" (`layer` is a full name).
    """

    layer: str
    where: str = "block"
    units: str = ALL


@dataclass(frozen=True)
class Layer:
    kind: str  # the bit report's module kind, e.g. "attention.q", "mlp.down"
    source: Source


@dataclass(frozen=True)
class Architecture:
    """The layout of one family: `blocks` is the ModuleList of transformer blocks; `stream_start`
    the modules that write the residual stream before the first block (the first present one
    counts); `layers` the weight matrices of a block, by name inside the block; `outside` weight
    matrices outside the blocks, by full name, when present; `parallel` replaces entries of
    `layers` when the config flag `parallel_flag` is true (attention and MLP read the same input)."""

    blocks: str
    stream_start: tuple[str, ...]
    layers: dict[str, Layer]
    outside: dict[str, Layer] = field(default_factory=dict)
    parallel_flag: str | None = None
    parallel: dict[str, Layer] = field(default_factory=dict)

    def block_layers(self, config) -> dict[str, Layer]:
        if self.parallel_flag and getattr(config, self.parallel_flag, False):
            return {**self.layers, **self.parallel}
        return self.layers


def _readers(names: tuple[str, ...], kinds: tuple[str, ...], source: Source) -> dict[str, Layer]:
    return {name: Layer(kind, source) for name, kind in zip(names, kinds)}


def _llama() -> Architecture:
    residual = Source("mlp.down_proj", "previous")
    after_attention = Source("self_attn.o_proj")
    return Architecture(
        blocks="model.layers",
        stream_start=("model.embed_tokens",),
        layers={
            **_readers(("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                       ("attention.q", "attention.k", "attention.v"), residual),
            "self_attn.o_proj": Layer("attention.o", Source("self_attn.v_proj", units=V_GROUPED)),
            "mlp.gate_proj": Layer("mlp.gate", after_attention),
            "mlp.up_proj": Layer("mlp.up", after_attention),
            # act(gate) * up: up is the linear factor of the down projection's input
            "mlp.down_proj": Layer("mlp.down", Source("mlp.up_proj")),
        },
    )


def _gpt2() -> Architecture:
    return Architecture(
        blocks="transformer.h",
        stream_start=("transformer.wte",),
        layers={
            "attn.c_attn": Layer("attention.qkv", Source("mlp.c_proj", "previous")),
            "attn.c_proj": Layer("attention.o", Source("attn.c_attn", units=V_OF_CONCAT_QKV)),
            "mlp.c_fc": Layer("mlp.up", Source("attn.c_proj")),
            "mlp.c_proj": Layer("mlp.down", Source("mlp.c_fc")),
        },
    )


def _opt() -> Architecture:
    residual = Source("fc2", "previous")
    return Architecture(
        blocks="model.decoder.layers",
        # embed_positions is an Embedding too, but the token embedding (or its projection) is the producer
        stream_start=("model.decoder.project_in", "model.decoder.embed_tokens"),
        layers={
            **_readers(("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                       ("attention.q", "attention.k", "attention.v"), residual),
            "self_attn.out_proj": Layer("attention.o", Source("self_attn.v_proj")),
            "fc1": Layer("mlp.up", Source("self_attn.out_proj")),
            "fc2": Layer("mlp.down", Source("fc1")),
        },
        outside={  # OPT-350m projects 512-wide embeddings to the 1024-wide stream and back
            "model.decoder.project_in": Layer("embedding.project_in", Source("model.decoder.embed_tokens", "model")),
            "model.decoder.project_out": Layer("embedding.project_out", Source("fc2", "last")),
        },
    )


def _bloom() -> Architecture:
    return Architecture(
        blocks="transformer.h",
        stream_start=("transformer.word_embeddings",),
        layers={
            "self_attention.query_key_value": Layer("attention.qkv", Source("mlp.dense_4h_to_h", "previous")),
            "self_attention.dense": Layer(
                "attention.o", Source("self_attention.query_key_value", units=V_OF_HEADWISE_QKV)),
            "mlp.dense_h_to_4h": Layer("mlp.up", Source("self_attention.dense")),
            "mlp.dense_4h_to_h": Layer("mlp.down", Source("mlp.dense_h_to_4h")),
        },
    )


def _gpt_neox() -> Architecture:
    residual = Source("mlp.dense_4h_to_h", "previous")
    return Architecture(
        blocks="gpt_neox.layers",
        stream_start=("gpt_neox.embed_in",),
        layers={
            "attention.query_key_value": Layer("attention.qkv", residual),
            "attention.dense": Layer("attention.o", Source("attention.query_key_value", units=V_OF_HEADWISE_QKV)),
            "mlp.dense_h_to_4h": Layer("mlp.up", Source("attention.dense")),
            "mlp.dense_4h_to_h": Layer("mlp.down", Source("mlp.dense_h_to_4h")),
        },
        # Pythia: x + attn(ln1(x)) + mlp(ln2(x)); the MLP reads the block input, not the attention output
        parallel_flag="use_parallel_residual",
        parallel={"mlp.dense_h_to_4h": Layer("mlp.up", residual)},
    )


ARCHITECTURES: dict[str, Architecture] = {
    "llama": _llama(),
    "mistral": _llama(),
    "qwen2": _llama(),
    "gpt2": _gpt2(),
    "opt": _opt(),
    "bloom": _bloom(),
    "gpt_neox": _gpt_neox(),
}


def model_type(model: nn.Module) -> str | None:
    return getattr(getattr(model, "config", None), "model_type", None)


def architecture_of(model: nn.Module) -> Architecture | None:
    """The map of the model's type, if kbit has one and the model has its blocks where it says."""
    arch = ARCHITECTURES.get(model_type(model))
    if arch is None:
        return None
    try:
        blocks = model.get_submodule(arch.blocks)
    except AttributeError:
        return None
    return arch if isinstance(blocks, nn.ModuleList) else None


@dataclass(frozen=True)
class Placement:
    """Where a weight matrix sits: its block index (None outside the blocks) and mapped layer."""

    block: int | None
    layer: Layer | None


def placements(model: nn.Module, arch: Architecture, names) -> dict[str, Placement]:
    """For each module name, its block and its entry in the architecture's map (None if unmapped)."""
    prefix = arch.blocks + "."
    layers = arch.block_layers(getattr(model, "config", None))
    found = {}
    for name in names:
        if name in arch.outside:
            found[name] = Placement(None, arch.outside[name])
        elif name.startswith(prefix):
            index, _, inner = name[len(prefix):].partition(".")
            found[name] = Placement(int(index) if index.isdigit() else None, layers.get(inner))
        else:
            found[name] = Placement(None, None)
    return found


_BLOCK_INDEX = re.compile(r"^(.*?)\.\d+\.(.+)$")


def layer_kinds(model: nn.Module, names) -> dict[str, str]:
    """The bit report's kind of each named weight matrix: the architecture map's kind, else the
    name inside its block (`self_attn.q_proj`), else the full name."""
    arch = architecture_of(model)
    placed = placements(model, arch, names) if arch else {}
    kinds = {}
    for name in names:
        layer = placed[name].layer if name in placed else None
        match = _BLOCK_INDEX.match(name)
        kinds[name] = layer.kind if layer else (match.group(2) if match else name)
    return kinds


def block_lists(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    """(name, ModuleList) of the model's stacks of transformer blocks: the architecture's, else every
    ModuleList of same-class modules that hold a quantizable layer (the generic reading)."""
    arch = architecture_of(model)
    if arch is not None:
        return [(arch.blocks, model.get_submodule(arch.blocks))]
    return [
        (name, module) for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) and len({type(c) for c in module}) == 1
        and any(is_quantizable(m) for m in module.modules())
    ]


def block_prefixes(model: nn.Module) -> list[str]:
    """'blocks.0.', 'blocks.1.', ... of the model's transformer blocks (`block_lists`)."""
    return [f"{name}.{i}." if name else f"{i}." for name, blocks in block_lists(model) for i in range(len(blocks))]


# -- proxy sources ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Proxy:
    """The producer of a reader's inputs: its module name and which of its output units (None:
    all, in order), or no producer (`name` None: the reader's own input-column std is used)."""

    name: str | None
    units: torch.Tensor | None = None


def proxy_plan(model: nn.Module, targets: list[str]) -> dict[str, Proxy]:
    """For each target layer, the module whose output units proxy its input dimensions."""
    arch = architecture_of(model)
    if arch is None:
        warnings.warn(
            f"kbit has no architecture map for model_type {model_type(model)!r}: proxy quantization pairs "
            "layers by module order (the latest earlier layer whose output width matches), which can pick "
            f"the wrong producer; known architectures: {', '.join(sorted(ARCHITECTURES))}",
            stacklevel=3,
        )
        return {t: Proxy(s) for t, s in fallback_sources(model, targets).items()}
    placed = placements(model, arch, targets)
    unmapped = [t for t in targets if placed[t].layer is None]
    plan = {t: Proxy(s) for t, s in fallback_sources(model, unmapped).items()}
    modules = dict(model.named_modules())
    n_blocks = len(model.get_submodule(arch.blocks))
    for target in targets:
        place = placed[target]
        if place.layer is None:
            continue
        name = _source_name(arch, modules, place, n_blocks)
        plan[target] = Proxy(name, _units(model, modules, target, name, place.layer.source.units))
    return plan


def _source_name(arch: Architecture, modules: dict, place: Placement, n_blocks: int) -> str:
    source = place.layer.source
    if source.where == "model":
        return source.layer
    if source.where == "last":
        return f"{arch.blocks}.{n_blocks - 1}.{source.layer}"
    if source.where == "previous":
        if place.block == 0:
            return next(n for n in arch.stream_start if n in modules)
        return f"{arch.blocks}.{place.block - 1}.{source.layer}"
    return f"{arch.blocks}.{place.block}.{source.layer}"


def out_width(module: nn.Module) -> int:
    return module.embedding_dim if isinstance(module, nn.Embedding) else in_out_features(module)[1]


def _units(model: nn.Module, modules: dict, target: str, source: str, units: str) -> torch.Tensor | None:
    """Indices into the source's output units, one per input dimension of the target."""
    width = in_out_features(modules[target])[0]
    produced = out_width(modules[source])
    if units == ALL:
        if produced != width:
            raise ValueError(f"architecture map: {source} has {produced} output units but {target} reads {width}")
        return None
    heads = model.config.num_attention_heads
    head_dim = width // heads
    h, d = torch.arange(width).div(head_dim, rounding_mode="floor"), torch.arange(width) % head_dim
    if units == V_OF_CONCAT_QKV:
        index = 2 * width + torch.arange(width)
    elif units == V_OF_HEADWISE_QKV:
        index = h * 3 * head_dim + 2 * head_dim + d
    elif units == V_GROUPED:
        group = heads // (produced // head_dim)  # query heads per kv head
        index = h.div(group, rounding_mode="floor") * head_dim + d
    else:
        raise ValueError(f"architecture map: unknown unit selection {units!r}")
    if int(index.max()) >= produced:
        raise ValueError(f"architecture map: {source} ({produced} output units) cannot feed {target} as {units!r}")
    return index


def fallback_sources(model: nn.Module, targets: list[str]) -> dict[str, str | None]:
    """Module order: the latest earlier layer whose output width equals the target's input width,
    skipping siblings that read the same input (same parent, same input width: q/k/v, gate/up).
    Of the embeddings only the largest table (the tokens, not the positions) counts."""
    embeddings = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
    tokens = max(embeddings, key=lambda e: e[1].num_embeddings)[0] if embeddings else None
    wanted, seen, sources = set(targets), [], {}
    for name, module in model.named_modules():
        if not (is_quantizable(module) or name == tokens):
            continue
        if name in wanted:
            width, parent = in_out_features(module)[0], name.rpartition(".")[0]
            sources[name] = next(
                (prev for prev, m in reversed(seen)
                 if out_width(m) == width
                 and not (is_quantizable(m) and prev.rpartition(".")[0] == parent and in_out_features(m)[0] == width)),
                None,
            )
        seen.append((name, module))
    return sources
