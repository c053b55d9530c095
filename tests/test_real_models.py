"""Real architectures from transformers, torchvision, timm and PyTorch Geometric, built from their
configs with random weights at toy sizes, converted and run in int mode against float.

One model per family runs in the fast suite; every row of the coverage table (docs/coverage.md,
compiler/coverage/architectures.py) runs under ``-m slow``. Nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch

from compiler import convert
from compiler.coverage.architectures import ARCHITECTURES, FAMILIES
from compiler.coverage.measure import measure
from compiler.thirdparty import (
    import_torchvision,
    import_transformers,
    torchvision_extension_loaded,
)


def test_torchvision_imports_with_the_cpu_torch_and_its_c_ops_fail_clearly():
    tv = import_torchvision()
    assert hasattr(tv.models, "resnet18")
    if not torchvision_extension_loaded():
        with pytest.raises(RuntimeError, match="Couldn't load custom C\\+\\+ ops"):
            tv.ops.nms(torch.rand(3, 4), torch.rand(3), 0.5)


@pytest.mark.parametrize("name,size", [("bert-sdpa", "tiny"), ("resnet18", "tiny"),
                                       ("timm-resnet18d", "tiny"), ("gcn", "table")])
def test_one_model_per_family_converts_and_int_matches_float(name, size):
    """One model per family on a small configuration: a 2-layer, hidden-32 BERT; the CNNs at
    their standard width on 32x32 images, where the random ResNet-18 amplifies one int8 step
    of input noise to a 0.97 logit cosine by itself and the default precision policy (16-bit
    input and the costliest weights) is what keeps int within 0.99; the graph network at its
    table size (40 nodes, 2 s), which is small already (the 12-node toy graph reaches 0.980)."""
    row = measure(name, size)
    assert row.converts, row.blocking
    assert row.cosine >= 0.99, row


def test_every_family_has_architectures():
    assert {a.family for a in ARCHITECTURES.values()} == set(FAMILIES)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_bert_called_with_a_padded_attention_mask_ignores_the_padding(attn):
    """The mask utilities of transformers become host pre-processing: changing the padded
    tokens' ids changes nothing in the unpadded outputs, in int mode as in float."""
    tf = import_transformers()
    cfg = tf.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, vocab_size=100, max_position_embeddings=64)
    cfg._attn_implementation = attn
    torch.manual_seed(0)
    model = tf.BertModel(cfg).eval()

    class LastHidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = model

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    wrapped = LastHidden().eval()
    ids = torch.randint(1, 100, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.int64)
    mask[1, 6:] = 0
    cal = [(torch.randint(1, 100, (2, 10)), mask) for _ in range(3)]
    cm = convert(wrapped, (ids, mask), cal)
    other = ids.clone()
    other[1, 6:] = 7
    a, b = cm(ids, mask), cm(other, mask)
    assert torch.equal(a[1, :6], b[1, :6])
    with torch.no_grad():
        ref = wrapped(ids, mask)
    cos = torch.nn.functional.cosine_similarity(a[mask.bool()], ref[mask.bool()], dim=-1)
    assert float(cos.mean()) > 0.99


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_coverage_table_row(name):
    """One row of docs/coverage.md's table (standard sizes): every architecture converts, and
    int matches float (cosine >= 0.99) with the default precision policy, the deep random
    depthwise CNNs included (their float networks reach only 0.81-0.97 under one int8 step of
    input noise: the policy holds their input, the tensors and the weights that cost most at
    16 bits)."""
    row = measure(name, "table")
    assert row.converts, row.blocking
    assert row.cosine >= 0.99, row
