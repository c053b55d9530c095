"""Real architectures from ``transformers``, ``torchvision``, ``timm`` and PyTorch Geometric,
built from their configs with random weights (never downloaded), with inputs as their own
tokenizers / processors produce them.

Each :class:`Architecture` builds a :class:`Case` at one of two sizes:

- ``"tiny"``: the same code paths at toy sizes (2 layers, hidden 32, 32x32 images) for fast tests;
- ``"table"``: the library's standard configuration (full depth and width) on small inputs
  (64x64 images, 32 tokens, 40 graph nodes) for the coverage table (``scripts/model_coverage.py``).

Encoder inputs are ``input_ids`` and ``attention_mask`` with padding: samples of different
lengths padded to the longest, as a tokenizer called with ``padding=True`` returns them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from compiler.thirdparty import import_timm, import_torchvision, import_transformers

__all__ = ["ARCHITECTURES", "Architecture", "Case", "FAMILIES", "build", "padded_batch",
           "torchvision_at"]

SIZES = ("tiny", "table")


@dataclass
class Case:
    """A model ready to convert: inputs to capture with, calibration batches, held-out batches.

    Attributes
    ----------
    model : nn.Module
        In eval mode, random weights (seeded).
    example_inputs : tuple of torch.Tensor
    calibration : list of tuple
    evaluation : list of tuple
        Held-out inputs for the int-vs-float comparison.
    kind : str
        ``"logits"`` (compare the whole output) or ``"tokens"`` (per-token cosine of the final
        hidden states over unpadded tokens; the mask is input 1).
    description : str
        The configuration, for the table.
    """

    model: nn.Module
    example_inputs: tuple
    calibration: list
    evaluation: list
    kind: str = "logits"
    description: str = ""


@dataclass(frozen=True)
class Architecture:
    """One architecture of the coverage table: ``build(size, seed)`` returns a :class:`Case`."""

    name: str
    family: str
    builder: Callable[[str, int], Case] = field(repr=False)

    def build(self, size: str = "table", seed: int = 0) -> Case:
        """The model and its inputs at ``size`` (``"tiny"`` or ``"table"``)."""
        if size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {size!r}")
        torch.manual_seed(seed)
        case = self.builder(size, seed)
        _randomise_zero_weights(case.model)
        case.model.eval()
        return case


def _randomise_zero_weights(model: nn.Module) -> None:
    """Give weight matrices a library initialises to zero (torchvision ViT's classifier head)
    N(0, 0.02) values, as training would: a zero head makes every logit 0."""
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2 and not p.any():
                p.normal_(0.0, 0.02)


# ---- inputs ---------------------------------------------------------------------------------


def padded_batch(vocab: int, lengths: list[int], seq: int, gen: torch.Generator,
                 pad_id: int = 0, first_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of a batch padded to ``seq`` as a tokenizer pads it:
    ids in ``[1, vocab)`` (``first_id`` first, as a [CLS]), pad id after each sample's length."""
    ids = torch.randint(1, vocab, (len(lengths), seq), generator=gen)
    mask = torch.zeros(len(lengths), seq, dtype=torch.int64)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, n:] = pad_id
        if first_id is not None:
            ids[i, 0] = first_id
    return ids, mask


def _token_batches(vocab: int, seq: int, n: int, seed: int, pad_id: int = 0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        lengths = [seq, int(torch.randint(seq // 2, seq, (1,), generator=gen))]
        out.append(padded_batch(vocab, lengths, seq, gen, pad_id))
    return out


def _image_batches(shape, n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(*shape, generator=gen),) for _ in range(n)]


def _encoder_case(model: nn.Module, vocab: int, seq: int, seed: int, description: str,
                  pad_id: int = 0, n_cal: int = 4) -> Case:
    cal = _token_batches(vocab, seq, n_cal, seed + 1, pad_id)
    ev = _token_batches(vocab, seq, 2, seed + 2, pad_id)
    return Case(_LastHidden(model), cal[0], cal, ev, "tokens", description)


def _image_case(model: nn.Module, side: int, seed: int, description: str, channels: int = 3,
                n_cal: int = 4) -> Case:
    shape = (2, channels, side, side)
    cal = _image_batches(shape, n_cal, seed + 1)
    ev = _image_batches(shape, 2, seed + 2)
    _estimate_batchnorm(model, _image_batches((8, channels, side, side), 4, seed + 3))
    return Case(model, cal[0], cal, ev, "logits", description)


def _estimate_batchnorm(model: nn.Module, batches: list) -> None:
    """Set every BatchNorm's running statistics to those of ``batches`` (train-mode passes,
    cumulative average), as training leaves them. With the initial statistics (mean 0, variance
    1) deep random CNNs shrink their activations layer by layer (EfficientNet-B0 at 32x32 reaches
    1e-14), which no trained network does."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for (x,) in batches:
            model(x)
    model.eval()


class _LastHidden(nn.Module):
    """A ``transformers`` encoder called as ``model(input_ids=..., attention_mask=...)``,
    returning ``last_hidden_state`` (what a sentence encoder pools)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class _Logits(nn.Module):
    """A ``transformers`` vision model called as ``model(pixel_values=...)``, returning logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values).logits


# ---- transformers ---------------------------------------------------------------------------

_TINY_TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, vocab_size=100, max_position_embeddings=64)
_TABLE_LAYERS = 2
_TABLE_SEQ = 32


def _text(config_cls: str, model_cls: str, *, attn: str | None = None, tiny=None, table=None,
          pad_id: int = 0):
    def build(size: str, seed: int) -> Case:
        tf = import_transformers()
        kwargs = dict(_TINY_TEXT, **(tiny or {})) if size == "tiny" else dict(
            num_hidden_layers=_TABLE_LAYERS, **(table or {}))
        kwargs["pad_token_id"] = pad_id
        cfg = getattr(tf, config_cls)(**kwargs)
        if attn is not None:
            cfg._attn_implementation = attn
        model = getattr(tf, model_cls)(cfg)
        seq = 12 if size == "tiny" else _TABLE_SEQ
        hidden = getattr(cfg, "hidden_size", getattr(cfg, "dim", None))
        layers = getattr(cfg, "num_hidden_layers", getattr(cfg, "n_layers", None))
        desc = (f"{model_cls} {layers} layers, hidden {hidden}, seq {seq}, "
                f"attention={cfg._attn_implementation}")
        return _encoder_case(model, cfg.vocab_size, seq, seed, desc, pad_id)

    return build


def _vision_transformer(config_cls: str, model_cls: str):
    def build(size: str, seed: int) -> Case:
        tf = import_transformers()
        if size == "tiny":
            kw = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, image_size=32, patch_size=8, num_labels=10)
        else:
            kw = dict(num_hidden_layers=_TABLE_LAYERS, image_size=64, patch_size=16,
                      num_labels=1000)
        cfg = getattr(tf, config_cls)(**kw)
        model = getattr(tf, model_cls)(cfg)
        _randomise_zero_tokens(model)
        desc = (f"{model_cls} {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
                f"{cfg.image_size}px/{cfg.patch_size}, attention={cfg._attn_implementation}")
        return _image_case(_Logits(model), cfg.image_size, seed, desc)

    return build


def _randomise_zero_tokens(model: nn.Module) -> None:
    """Give the token parameters ``transformers`` initialises to zero (class / distillation
    tokens, position embeddings) N(0, 0.02) values, as training would: with them all zero every
    token of a random model starts equal and the first LayerNorm sees zero variance."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.rsplit(".", 1)[-1] in ("cls_token", "distillation_token",
                                           "position_embeddings") and not p.any():
                p.normal_(0.0, 0.02)


# ---- torchvision / timm ---------------------------------------------------------------------


def _torchvision(name: str, tiny_kwargs: dict | None = None, side: int = 64, tiny_side: int = 32):
    def build(size: str, seed: int) -> Case:
        tv = import_torchvision()
        kwargs = dict(tiny_kwargs or {}) if size == "tiny" else {}
        kwargs.setdefault("num_classes", 10 if size == "tiny" else 1000)
        model = getattr(tv.models, name)(weights=None, **kwargs)
        s = tiny_side if size == "tiny" else side
        extra = f" {kwargs}" if size == "tiny" and tiny_kwargs else ""
        return _image_case(model, s, seed, f"torchvision {name}{extra}, {s}x{s}")

    return build


def _tv_vit(size: str, seed: int) -> Case:
    tv = import_torchvision()
    from torchvision.models.vision_transformer import VisionTransformer

    if size == "tiny":
        model = VisionTransformer(32, 8, 2, 2, 32, 64, num_classes=10)
        return _image_case(model, 32, seed, "torchvision VisionTransformer 2 layers, hidden 32")
    model = VisionTransformer(64, 16, _TABLE_LAYERS, 12, 768, 3072, num_classes=1000)
    del tv
    return _image_case(model, 64, seed, f"torchvision ViT-B/16 blocks, {_TABLE_LAYERS} layers, "
                                        "64x64")


def _timm(name: str, tiny_kwargs: dict | None = None, side: int = 64, tiny_side: int = 32):
    def build(size: str, seed: int) -> Case:
        timm = import_timm()
        kwargs = dict(tiny_kwargs or {}) if size == "tiny" else {}
        kwargs.setdefault("num_classes", 10 if size == "tiny" else 1000)
        s = tiny_side if size == "tiny" else side
        if "vit" in name or "deit" in name:
            kwargs.setdefault("img_size", s)
        model = timm.create_model(name, pretrained=False, **kwargs)
        extra = f" {kwargs}" if size == "tiny" and tiny_kwargs else ""
        return _image_case(model, s, seed, f"timm {name}{extra}, {s}x{s}")

    return build


# ---- graph networks -------------------------------------------------------------------------


class _FixedGraph(nn.Module):
    """Two PyTorch Geometric layers on one fixed graph: ``edge_index`` is a buffer, so the
    normalisation and the gather/scatter index work fold into constant adjacency operands."""

    def __init__(self, conv1: nn.Module, conv2: nn.Module, edge_index: torch.Tensor) -> None:
        super().__init__()
        self.conv1, self.conv2 = conv1, conv2
        self.register_buffer("edge_index", edge_index)

    def forward(self, x):
        h = torch.relu(self.conv1(x, self.edge_index))
        return self.conv2(h, self.edge_index)


def _random_graph(nodes: int, edges: int, gen: torch.Generator) -> torch.Tensor:
    src = torch.randint(0, nodes, (edges,), generator=gen)
    dst = torch.randint(0, nodes, (edges,), generator=gen)
    keep = src != dst
    ei = torch.stack([src[keep], dst[keep]])
    return torch.cat([ei, ei.flip(0)], dim=1)  # undirected


def _graph(layer: str):
    def build(size: str, seed: int) -> Case:
        import torch_geometric.nn as pyg

        gen = torch.Generator().manual_seed(seed)
        nodes, feats, hidden, classes = (12, 8, 16, 4) if size == "tiny" else (40, 32, 64, 7)
        ei = _random_graph(nodes, nodes * 2, gen)
        conv = getattr(pyg, layer)
        kw = {"cached": True} if layer == "GCNConv" else {}
        model = _FixedGraph(conv(feats, hidden, **kw), conv(hidden, classes, **kw), ei)
        with torch.no_grad():  # GCNConv(cached=True) normalises the fixed graph once, here
            model.eval()(torch.zeros(nodes, feats))
        cal = [(torch.randn(nodes, feats, generator=gen),) for _ in range(4)]
        ev = [(torch.randn(nodes, feats, generator=gen),) for _ in range(2)]
        return Case(model, cal[0], cal, ev, "logits",
                    f"PyG {layer} x2, {nodes} nodes, {ei.shape[1]} edges (fixed graph)")

    return build


# ---- the catalogue --------------------------------------------------------------------------

_BERT_TABLE = {}
_MINILM = dict(hidden_size=384, num_attention_heads=12, intermediate_size=1536)

ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("bert-eager", "transformers", _text("BertConfig", "BertModel", attn="eager")),
        Architecture("bert-sdpa", "transformers", _text("BertConfig", "BertModel", attn="sdpa")),
        Architecture("minilm", "transformers",
                     _text("BertConfig", "BertModel", table=_MINILM)),
        Architecture("distilbert", "transformers", _text(
            "DistilBertConfig", "DistilBertModel",
            tiny=dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64),
            table={})),
        Architecture("roberta", "transformers", _text("RobertaConfig", "RobertaModel", pad_id=1)),
        Architecture("albert", "transformers", _text(
            "AlbertConfig", "AlbertModel", tiny=dict(embedding_size=16),
            table=dict(hidden_size=768, num_attention_heads=12, intermediate_size=3072,
                       embedding_size=128))),
        Architecture("electra", "transformers", _text("ElectraConfig", "ElectraModel",
                                                      tiny=dict(embedding_size=16))),
        Architecture("vit-hf", "transformers",
                     _vision_transformer("ViTConfig", "ViTForImageClassification")),
        Architecture("deit-hf", "transformers",
                     _vision_transformer("DeiTConfig", "DeiTForImageClassification")),
        Architecture("resnet18", "torchvision", _torchvision("resnet18")),
        Architecture("mobilenet_v2", "torchvision",
                     _torchvision("mobilenet_v2", dict(width_mult=0.25))),
        Architecture("mobilenet_v3_small", "torchvision",
                     _torchvision("mobilenet_v3_small", dict(width_mult=0.25))),
        Architecture("efficientnet_b0", "torchvision", _torchvision("efficientnet_b0")),
        Architecture("regnet_y_400mf", "torchvision", _torchvision("regnet_y_400mf")),
        Architecture("shufflenet_v2_x0_5", "torchvision", _torchvision("shufflenet_v2_x0_5")),
        Architecture("squeezenet1_0", "torchvision", _torchvision("squeezenet1_0")),
        Architecture("convnext_tiny", "torchvision", _torchvision(
            "convnext_tiny", side=64)),
        Architecture("vit_b_16", "torchvision", _tv_vit),
        Architecture("timm-resnet18d", "timm", _timm("resnet18d")),
        Architecture("timm-mobilenetv3", "timm", _timm("mobilenetv3_small_050")),
        Architecture("timm-efficientnet_b0", "timm", _timm("efficientnet_b0")),
        Architecture("timm-convnext_atto", "timm", _timm("convnext_atto")),
        Architecture("timm-vit_tiny", "timm", _timm(
            "vit_tiny_patch16_224", dict(depth=2, embed_dim=32, num_heads=2))),
        Architecture("gcn", "graph", _graph("GCNConv")),
        Architecture("graphsage", "graph", _graph("SAGEConv")),
    )
}

FAMILIES = ("transformers", "torchvision", "timm", "graph")


def build(name: str, size: str = "table", seed: int = 0) -> Case:
    """:meth:`Architecture.build` of :data:`ARCHITECTURES` ``[name]``."""
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name].build(size, seed)


def torchvision_at(name: str, side: int, seed: int = 0) -> Case:
    """Torchvision CNN ``name`` of the table (its full configuration) on ``side`` x ``side``
    images instead of the table's 64x64, built as :meth:`Architecture.build` builds it."""
    if name not in ARCHITECTURES or ARCHITECTURES[name].family != "torchvision":
        raise KeyError(f"{name!r} is not a torchvision architecture of the table")
    if side < 16:
        raise ValueError(f"side must be >= 16, got {side}")
    return Architecture(name, "torchvision", _torchvision(name, side=side)).build("table", seed)
