"""A small BERT encoder that mirrors Hugging Face ``transformers``' BertModel, for digit sequences.

Module names, buffers and op usage follow ``transformers.models.bert.modeling_bert`` so that what
the compiler captures here is what it would capture from a real HF BERT: ``BertEmbeddings`` (word +
position + token-type embeddings from ``position_ids`` / ``token_type_ids`` buffers sliced to the
input length, LayerNorm, dropout), ``BertSelfAttention`` (q/k/v Linear, ``view`` + ``permute``,
``matmul`` scores / sqrt(head size) + the additive extended attention mask, softmax, dropout,
``matmul`` context) or its SDPA form, ``BertSelfOutput`` / ``BertOutput`` (dense, dropout, residual,
LayerNorm), ``BertIntermediate`` (dense + GELU), the tanh ``BertPooler`` on [CLS], and a
``BertForSequenceClassification`` head.

Task: each digit image is a token sequence (see :func:`compiler.zoo.data.pixel_tokens`):
``[CLS]``, its pixels in row-major order up to the last non-zero one (token 3 + value, value
0..16), ``[SEP]``, then ``[PAD]`` to 66 tokens; the [CLS] pooled output is classified.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from compiler.zoo.data import TOKEN_PAD, TOKEN_SEQ_LEN, TOKEN_VOCAB_SIZE, token_data
from compiler.zoo.spec import ZooSpec
from compiler.zoo.training import TrainingConfig

__all__ = [
    "BertConfig",
    "GELUActivation",
    "NewGELUActivation",
    "PytorchGELUTanh",
    "BertEmbeddings",
    "BertSelfAttention",
    "BertSdpaSelfAttention",
    "BertSelfOutput",
    "BertAttention",
    "BertIntermediate",
    "BertOutput",
    "BertLayer",
    "BertEncoder",
    "BertPooler",
    "BertModel",
    "BertForSequenceClassification",
    "SPEC",
]


@dataclass(frozen=True)
class BertConfig:
    """Architecture of the BERT encoder (field names as in ``transformers.BertConfig``).

    Attributes
    ----------
    hidden_act : str
        ``"gelu"`` (erf form), ``"gelu_new"`` (HF's explicit tanh formula with ``torch.pow``
        and ``torch.tanh``) or ``"gelu_pytorch_tanh"`` (``F.gelu(approximate="tanh")``).
    attn_implementation : str
        ``"eager"`` (explicit matmul / softmax / matmul) or ``"sdpa"``
        (``F.scaled_dot_product_attention`` with the additive mask). Same function: the zoo
        trains once (eager) and loads those weights into either form.
    hidden_dropout_prob, attention_probs_dropout_prob : float
        Dropout rates; 0 for the zoo's digits task (dropout 0.1 trained slower for the same test
        accuracy). The dropout modules are present either way, as in HF.
    mask_fill : str
        Value added at masked key positions: ``"finfo_min"`` (``torch.finfo(dtype).min``, as
        current HF releases) or ``"-10000"`` (as older ones); both zero the masked
        probabilities in float32, so they share weights too.
    """

    vocab_size: int = TOKEN_VOCAB_SIZE
    hidden_size: int = 32
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int = 128
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    max_position_embeddings: int = TOKEN_SEQ_LEN
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = TOKEN_PAD
    num_labels: int = 10
    attn_implementation: str = "eager"
    mask_fill: str = "finfo_min"


class GELUActivation(nn.Module):
    """HF ``gelu``: the exact (erf) GELU."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.gelu(input)


class NewGELUActivation(nn.Module):
    """HF ``gelu_new``: the tanh approximation written out as in the original BERT/GPT code."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        inner = math.sqrt(2.0 / math.pi) * (input + 0.044715 * torch.pow(input, 3.0))
        return 0.5 * input * (1.0 + torch.tanh(inner))


class PytorchGELUTanh(nn.Module):
    """HF ``gelu_pytorch_tanh``: PyTorch's fused tanh-approximate GELU."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.gelu(input, approximate="tanh")


ACT2CLS = {
    "gelu": GELUActivation,
    "gelu_new": NewGELUActivation,
    "gelu_pytorch_tanh": PytorchGELUTanh,
}
MASK_FILLS = ("finfo_min", "-10000")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa")


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.register_buffer(
            "position_ids",
            torch.arange(config.max_position_embeddings).expand((1, -1)),
            persistent=False,
        )
        self.register_buffer(
            "token_type_ids",
            torch.zeros(self.position_ids.size(), dtype=torch.long),
            persistent=False,
        )

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        input_shape = input_ids.size()
        seq_length = input_shape[1]
        position_ids = self.position_ids[:, :seq_length]
        if token_type_ids is None:
            buffered_token_type_ids = self.token_type_ids[:, :seq_length]
            token_type_ids = buffered_token_type_ids.expand(input_shape[0], seq_length)
        inputs_embeds = self.word_embeddings(input_ids)
        token_type_embeddings = self.token_type_embeddings(token_type_ids)
        embeddings = inputs_embeds + token_type_embeddings
        position_embeddings = self.position_embeddings(position_ids)
        embeddings = embeddings + position_embeddings
        embeddings = self.LayerNorm(embeddings)
        return self.dropout(embeddings)


class BertSelfAttention(nn.Module):
    """Eager multi-head self-attention: explicit matmul, additive mask, softmax, matmul."""

    def __init__(self, config: BertConfig):
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(
                f"hidden_size {config.hidden_size} is not a multiple of num_attention_heads "
                f"{config.num_attention_heads}"
            )
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def transpose_for_scores(self, x: torch.Tensor) -> torch.Tensor:
        new_x_shape = x.size()[:-1] + (self.num_attention_heads, self.attention_head_size)
        x = x.view(new_x_shape)
        return x.permute(0, 2, 1, 3)

    def _merge_heads(self, context_layer: torch.Tensor) -> torch.Tensor:
        context_layer = context_layer.permute(0, 2, 1, 3).contiguous()
        new_context_layer_shape = context_layer.size()[:-2] + (self.all_head_size,)
        return context_layer.view(new_context_layer_shape)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        query_layer = self.transpose_for_scores(self.query(hidden_states))
        key_layer = self.transpose_for_scores(self.key(hidden_states))
        value_layer = self.transpose_for_scores(self.value(hidden_states))
        attention_scores = torch.matmul(query_layer, key_layer.transpose(-1, -2))
        attention_scores = attention_scores / math.sqrt(self.attention_head_size)
        attention_scores = attention_scores + attention_mask
        attention_probs = nn.functional.softmax(attention_scores, dim=-1)
        attention_probs = self.dropout(attention_probs)
        context_layer = torch.matmul(attention_probs, value_layer)
        return self._merge_heads(context_layer)


class BertSdpaSelfAttention(BertSelfAttention):
    """The same attention through ``F.scaled_dot_product_attention`` (as HF's SDPA path)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.dropout_prob = config.attention_probs_dropout_prob

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        query_layer = self.transpose_for_scores(self.query(hidden_states))
        key_layer = self.transpose_for_scores(self.key(hidden_states))
        value_layer = self.transpose_for_scores(self.value(hidden_states))
        attn_output = F.scaled_dot_product_attention(
            query_layer,
            key_layer,
            value_layer,
            attn_mask=attention_mask,
            dropout_p=self.dropout_prob if self.training else 0.0,
            is_causal=False,
        )
        return self._merge_heads(attn_output)


class BertSelfOutput(nn.Module):
    """Dense, dropout, residual add, LayerNorm after attention."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.dense(hidden_states))
        return self.LayerNorm(hidden_states + input_tensor)


class BertAttention(nn.Module):
    """Self-attention followed by its output projection."""

    def __init__(self, config: BertConfig):
        super().__init__()
        if config.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation {config.attn_implementation!r} is not one of "
                f"{ATTN_IMPLEMENTATIONS}"
            )
        if config.attn_implementation == "sdpa":
            self.self = BertSdpaSelfAttention(config)
        else:
            self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(hidden_states, attention_mask), hidden_states)


class BertIntermediate(nn.Module):
    """Dense up-projection and the GELU."""

    def __init__(self, config: BertConfig):
        super().__init__()
        if config.hidden_act not in ACT2CLS:
            raise ValueError(f"hidden_act {config.hidden_act!r} is not one of {sorted(ACT2CLS)}")
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACT2CLS[config.hidden_act]()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class BertOutput(nn.Module):
    """Dense down-projection, dropout, residual add, LayerNorm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.dense(hidden_states))
        return self.LayerNorm(hidden_states + input_tensor)


class BertLayer(nn.Module):
    """Attention block then feed-forward block (post-norm)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        attention_output = self.attention(hidden_states, attention_mask)
        return self.output(self.intermediate(attention_output), attention_output)


class BertEncoder(nn.Module):
    """The stack of :class:`BertLayer`."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        for layer_module in self.layer:
            hidden_states = layer_module(hidden_states, attention_mask)
        return hidden_states


class BertPooler(nn.Module):
    """Dense + tanh on the first ([CLS]) token."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        first_token_tensor = hidden_states[:, 0]
        return self.activation(self.dense(first_token_tensor))


class BertModel(nn.Module):
    """The encoder: ``forward(input_ids, attention_mask) -> (sequence_output, pooled_output)``.

    ``attention_mask`` (N, L) holds 1 for tokens to attend to and 0 for padding; it becomes the
    additive mask ``(1 - mask[:, None, None, :]) * fill`` (``fill`` per ``config.mask_fill``).
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        if config.mask_fill not in MASK_FILLS:
            raise ValueError(f"mask_fill {config.mask_fill!r} is not one of {MASK_FILLS}")
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)

    def get_extended_attention_mask(
        self, attention_mask: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor:
        extended_attention_mask = attention_mask[:, None, None, :]
        extended_attention_mask = extended_attention_mask.to(dtype=dtype)
        fill = torch.finfo(dtype).min if self.config.mask_fill == "finfo_min" else -10000.0
        return (1.0 - extended_attention_mask) * fill

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embedding_output = self.embeddings(input_ids)
        extended_attention_mask = self.get_extended_attention_mask(
            attention_mask, embedding_output.dtype
        )
        sequence_output = self.encoder(embedding_output, extended_attention_mask)
        pooled_output = self.pooler(sequence_output)
        return sequence_output, pooled_output


class BertForSequenceClassification(nn.Module):
    """BERT + dropout + Linear on the pooled output.

    ``forward(input_ids, attention_mask) -> logits (N, num_labels)``; the encoder alone is
    ``self.bert`` (returns the final hidden states and the pooled output).
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        _, pooled_output = self.bert(input_ids, attention_mask)
        return self.classifier(self.dropout(pooled_output))


def _describe(config: BertConfig) -> str:
    return (
        f"HF-style BERT encoder ({config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"{config.num_attention_heads} heads, {config.hidden_act}, {config.attn_implementation} "
        "attention) + tanh pooler + classifier; digit classification from [CLS] + pixel-value "
        "tokens (trailing zeros dropped, padded to 66); sklearn load_digits, stratified "
        "1347 train / 450 test (seed 0)"
    )


SPEC = ZooSpec(
    name="bert",
    config=BertConfig(),
    training=TrainingConfig(
        epochs=45, batch_size=32, lr=5e-3, weight_decay=1e-2, label_smoothing=0.1
    ),
    build=BertForSequenceClassification,
    data=lambda config: token_data(),
    task="classification",
    describe=_describe,
    inference_options=frozenset({"attn_implementation", "mask_fill"}),
)
