"""The attention-mask graph patterns of ``transformers`` 4.x, converted without 4.x installed.

Only ``transformers`` 5.x is a dependency (its mask utilities are covered by
tests/test_real_models.py). BERT-family encoders of the 4.x releases built the mask in one of two
ways, and an exported graph holds only the aten ops those functions trace to, so a model that
builds its mask the same way exercises the same conversion path:

- eager attention (every 4.x release): ``ModuleUtilsMixin.get_extended_attention_mask``,
  ``(1 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min`` (``-10000`` in early
  releases): the zoo BERT's own ``get_extended_attention_mask``;
- SDPA attention (4.41 to 4.52): ``_prepare_4d_attention_mask_for_sdpa``, which skips the mask
  when no token is padded (``torch.all(mask == 1)``, a data-dependent branch, taken as "keep the
  mask" while tracing) and otherwise expands it to ``(N, 1, T, S)``, inverts it and fills the
  masked positions with ``finfo.min`` by ``masked_fill`` on a bool cast: :func:`expand_mask_4x`.

The zoo BERT (compiler/zoo/bert.py) with random weights is the encoder; its eager and SDPA
attention are the two attention forms.
"""

from __future__ import annotations

import pytest
import torch

from compiler import convert
from compiler.report import token_cosines
from compiler.zoo.bert import BertConfig, BertModel


def _is_tracing(mask: torch.Tensor) -> bool:
    """The tracing test of the 4.x mask utilities (jit trace, FX proxy, dynamo/export)."""
    return (torch.jit.is_tracing() or isinstance(mask, torch.fx.Proxy)
            or torch.compiler.is_compiling())


def expand_mask_4x(mask: torch.Tensor, dtype: torch.dtype, tgt_len: int) -> torch.Tensor | None:
    """What the 4.x ``_prepare_4d_attention_mask_for_sdpa`` computes from a 2-D padding mask:
    None when nothing is padded (outside tracing), else the additive ``(N, 1, T, S)`` mask."""
    n, src_len = mask.shape
    if not _is_tracing(mask) and bool(torch.all(mask == 1)):
        return None
    expanded = mask[:, None, None, :].expand(n, 1, tgt_len, src_len).to(dtype)
    inverted = 1.0 - expanded
    return inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)


class _Bert4xSdpa(BertModel):
    """The zoo BERT with SDPA attention and the 4.x SDPA mask preparation."""

    def get_extended_attention_mask(self, attention_mask, dtype):
        return expand_mask_4x(attention_mask, dtype, attention_mask.shape[1])


class _Encoder(torch.nn.Module):
    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids, attention_mask)[0]


_SEQ = 10


def _batch(gen, padded_from: int | None):
    ids = torch.randint(1, 100, (2, _SEQ), generator=gen)
    mask = torch.ones(2, _SEQ, dtype=torch.int64)
    if padded_from is not None:
        mask[1, padded_from:] = 0
        ids[1, padded_from:] = 0
    return ids, mask


def _model(form: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if form == "sdpa-4d":
        bert = _Bert4xSdpa(BertConfig(vocab_size=100, attn_implementation="sdpa"))
    else:
        fill = "-10000" if form == "eager-10000" else "finfo_min"
        bert = BertModel(BertConfig(vocab_size=100, attn_implementation="eager", mask_fill=fill))
    return _Encoder(bert).eval()


def test_expand_mask_4x_matches_the_documented_4x_values():
    """The helper reproduces the 4.x semantics: 0 where attended, finfo.min where padded, the
    same row for every query, and None for an unpadded batch outside tracing."""
    mask = torch.tensor([[1, 1, 1, 0]])
    m = expand_mask_4x(mask, torch.float32, 3)
    assert m.shape == (1, 1, 3, 4)
    assert torch.equal(m[0, 0, :, :3], torch.zeros(3, 3))
    assert bool((m[0, 0, :, 3] == torch.finfo(torch.float32).min).all())
    assert expand_mask_4x(torch.ones(1, 4, dtype=torch.int64), torch.float32, 4) is None


@pytest.mark.parametrize("form", ["sdpa-4d", "eager-finfo", "eager-10000"])
def test_4x_mask_forms_convert_as_host_preprocessing(form):
    """Each 4.x mask form converts with the mask as host pre-processing; int mode matches float
    on padded and unpadded batches, and the padded tokens' ids do not change the real tokens'
    outputs (the padding is really masked, not merely near-zero)."""
    model = _model(form)
    gen = torch.Generator().manual_seed(3)
    cal = [_batch(gen, p) for p in (6, None, 4, 8)]
    cm = convert(model, cal[0], cal)
    assert cm.graph.host_ops, "the mask computation must run on the host"
    assert cm.node_kinds() == {"GemmNode"}
    for padded_from in (5, None):
        ids, mask = _batch(gen, padded_from)
        with torch.no_grad():
            ref = model(ids, mask)
            got = cm(ids, mask, mode="int")
        assert float(token_cosines(got, ref, mask).mean()) > 0.99, (form, padded_from)
        if padded_from is not None:
            other = ids.clone()
            other[1, padded_from:] = 7
            again = cm(other, mask, mode="int")
            keep = mask.bool()
            assert torch.equal(again[keep], got[keep])
