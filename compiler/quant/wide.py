"""16-bit GEMM operands: the split contract ``v = 256 hi + lo`` with int8 halves.

The array multiplies int8 operands only. A data tensor held at 16 bits enters a GEMM as two int8
tensors, ``hi`` and ``lo``, run as two GEMMs into the same int32 accumulator (docs/isa.md,
"16-bit operands")::

    GEMM hi · W            (OVERWRITE, together with every other term of the node that is
                            accumulated before the shift: its constants are quantised 256x coarser)
    EPI dest=ACC, multiplier 256, shift 0, identity table      (in place: acc = sat32(256 acc))
    GEMM lo · W            (ACCUMULATE, with the node's remaining terms and the bias)

The producer of a 16-bit tensor writes its epilogue result ``v`` into the accumulator
(``EPI dest=ACC``, int32) and splits it with saturating epilogues::

    EPI  multiplier 1, shift 8, identity -> int8:  hi = sat8(round_shift(v, 8))
    GEMM hi · (-128 I) twice, ACCUMULATE:          acc = v - 256 hi
    EPI  identity -> int8:                          lo = sat8(v - 256 hi)

A term whose *both* operands are 16-bit (``q·kᵀ`` with 16-bit queries and keys, LayerNorm's
``Σ xc²``) runs as three int8 GEMMs around the same ``x256`` epilogue::

    GEMM hi_a · hi_b       (before the shift)
    GEMM hi_a · lo_b, GEMM lo_a · hi_b      (after it)

so the accumulator holds ``(v_a · v_b - lo_a · lo_b) / 256``: its step is ``256 sA sB`` and the
dropped ``lo·lo / 256`` is at most ``64`` steps per product (relative ``2^-16`` of full scale).
The shifted ``hi·hi`` sum is below ``2^31`` for every input when the reduction length is at most
:data:`WIDE_PAIR_MAX_K` (``K · 128² · 256 < 2^31``); a longer self-product reads its ``hi``
halves only (``"hh"``, one int8 GEMM at 256x the 16-bit step), a longer product of two different
16-bit tensors is refused.

``round_shift`` rounds half up, so for ``WIDE_MIN <= v <= WIDE_MAX`` (``-32896 .. 32639``) both
halves are in range and ``256 hi + lo == v`` exactly (``lo = ((v + 128) mod 256) - 128``,
``hi = (v - lo) / 256``). Outside that range the saturating epilogues give
``256 hi + lo == clamp(v, WIDE_MIN, WIDE_MAX)``: a 16-bit tensor saturates at those bounds the way
an int8 tensor saturates at -128..127. The quantiser maps :data:`WIDE_HEADROOM` times a wide
tensor's calibrated ``max |v|`` to :data:`WIDE_QMAX` (symmetric), so calibrated values never
saturate and held-out values up to that factor beyond them do not either; a tensor whose ``hi``
halves alone are read (``"hh"``), and the ``"transformer"`` policy's tensors (the residual stream
and attention, measured on the zoo transformers without it), keep the calibrated maximum at full
scale.

Constants (weights, :attr:`compiler.graph.Term.const_bits`) and graph inputs can be 16-bit too:
a constant is split offline into ``hi`` and ``lo`` planes (scale ``max |w| / WIDE_QMAX`` per
output column), a graph input by the host, which writes both planes.
"""

from __future__ import annotations

import numpy as np

from hw.numeric import PwlTable, epilogue, round_shift

__all__ = ["HI_STEP", "SHIFTED_SPLITS", "WEIGHT_SUFFIX", "WIDE_HEADROOM", "WIDE_MAX", "WIDE_MIN",
           "WIDE_PAIR_MAX_K", "WIDE_QMAX", "join_int16", "pair_split", "scale_group", "split_int16",
           "split_saturating", "weight_problem", "weight_side", "weight_terms", "wide_weights"]

#: Smallest and largest value ``256 hi + lo`` with ``hi, lo`` int8 and ``hi = round_shift(v, 8)``.
WIDE_MIN, WIDE_MAX = -128 * 256 - 128, 127 * 256 + 127
#: Symmetric quantisation bound of a 16-bit operand (``WIDE_HEADROOM max |v|`` maps here).
WIDE_QMAX = WIDE_MAX
#: Full scale of a 16-bit data tensor (node output or graph input) over its calibrated
#: ``max |v|``: 2 of its 16 bits, so held-out inputs a little beyond the calibration set do not
#: saturate (an int8 tensor clips by design: MSE-optimal; a 16-bit one is chosen for accuracy).
WIDE_HEADROOM = 4.0
#: 16-bit steps per step of the ``hi`` half (a self-product reads ``hi`` only).
HI_STEP = 256
#: Longest reduction of a term with two 16-bit operands run as ``hi·hi``, ``x256``,
#: ``hi·lo + lo·hi``: ``K · 128² · 256 <= 2^31 - 1``.
WIDE_PAIR_MAX_K = ((1 << 31) - 1) // (128 * 128 * 256)
#: ``TermQuant.split`` values whose terms run partly before and partly after the ``x256``
#: epilogue (one 16-bit operand ``"a"``/``"b"``, or both ``"ab"``).
SHIFTED_SPLITS = ("a", "b", "ab")

_IDENTITY = PwlTable.identity()


def split_int16(v) -> tuple[np.ndarray, np.ndarray]:
    """Exact split ``v = 256 hi + lo`` into int8 halves (int64 arrays).

    Raises
    ------
    compiler.quant.quantize.QuantizationError
        If any value is outside ``WIDE_MIN .. WIDE_MAX`` (the halves would not be int8).
    """
    v = np.asarray(v, dtype=np.int64)
    if v.size and (int(v.min()) < WIDE_MIN or int(v.max()) > WIDE_MAX):
        from compiler.quant.quantize import QuantizationError

        bad = int(v.min()) if int(v.min()) < WIDE_MIN else int(v.max())
        raise QuantizationError(
            f"16-bit operand value {bad} outside the split range {WIDE_MIN}..{WIDE_MAX} "
            "(hi = round_shift(v, 8) and lo = v - 256 hi must both be int8)"
        )
    hi = round_shift(v, 8)
    return hi, v - 256 * hi


def split_saturating(v) -> tuple[np.ndarray, np.ndarray]:
    """The producer's split of an int32 epilogue result ``v`` as the hardware does it (saturating
    epilogues, :mod:`hw.numeric` only); ``256 hi + lo == clamp(v, WIDE_MIN, WIDE_MAX)``."""
    v = np.asarray(v, dtype=np.int64)
    hi = epilogue(v, 1, 8, _IDENTITY, 8)
    lo = epilogue(v - 256 * hi, 1, 0, _IDENTITY, 8)
    return hi, lo


def join_int16(hi, lo) -> np.ndarray:
    """``256 hi + lo`` (int64)."""
    return 256 * np.asarray(hi, dtype=np.int64) + np.asarray(lo, dtype=np.int64)


def gemm_readers(graph, name: str) -> list[tuple]:
    """``(node, term_index, side)`` for every GEMM operand reading tensor ``name``."""
    out = []
    for node in graph.nodes:
        for i, t in enumerate(node.terms):
            if t.a.source == name:
                out.append((node, i, "a"))
            if t.b.source == name:
                out.append((node, i, "b"))
    return out


def scale_group(graph, name: str) -> list[str]:
    """Node ``name`` with every node tied to its scale (``scale_like``), root first.

    A softmax's max tree and the max-pool ``b + relu(a - b)`` steps are quantised *like* their
    input (so that the tree is exact in integers); such a group is held at 8 or at 16 bits as a
    whole. A node outside any group is its own group.
    """
    if graph.kind_of(name) != "node":  # a graph input: a group of its own
        return [name]
    root = name
    seen = {root}
    while True:
        like = graph.node(root).epilogue.scale_like
        if like is None or like in seen or graph.kind_of(like) != "node":
            break
        root = like
        seen.add(root)
    members = [root]
    frontier = [root]
    while frontier:
        cur = frontier.pop()
        for n in graph.nodes:
            if n.epilogue.scale_like == cur and n.name not in members:
                members.append(n.name)
                frontier.append(n.name)
    return members


def wide_problem(graph, name: str) -> str | None:
    """Why tensor ``name`` cannot be held at 16 bits as a GEMM operand, or None if it can.

    A 16-bit operand must be a node output (graph inputs and host results enter as int8) written
    with an int8-or-16-bit epilogue; it is widened with its :func:`scale_group` (every member
    must qualify), and some GEMM must read a member. Terms reading two 16-bit operands run as
    three int8 GEMMs (``"ab"``, module doc), or for long self-products as one GEMM of the ``hi``
    halves (``"hh"``).
    """
    try:
        kind = graph.kind_of(name)
    except KeyError:
        return "no such tensor"
    if kind == "input":
        gi = next(i for i in graph.inputs if i.name == name)
        if not gi.dtype.is_floating_point:
            return f"it is a {gi.dtype} graph input (only floating-point inputs are quantised)"
        if not gemm_readers(graph, name):
            return "no GEMM reads it as an operand"
        return None
    if kind != "node":
        return (f"it is a {kind} tensor; only GEMM node outputs and graph inputs can be held "
                "at 16 bits")
    group = scale_group(graph, name)
    like = graph.node(group[0]).epilogue.scale_like
    if like is not None:  # scale_group stops at a tensor that is not a node
        return f"it is quantised like {like}, a {graph.kind_of(like)} tensor"
    for member in group:
        bits = graph.node(member).epilogue.out_bits
        if bits not in (8, 16):
            what = "its epilogue" if member == name else f"{member} (same scale group)"
            return f"{what} writes int{bits}"
    if not any(gemm_readers(graph, m) for m in group):
        return "no GEMM reads it as an operand"
    return None


def pair_split(term) -> str | None:
    """How a term whose two operands are both 16-bit runs: ``"ab"`` (three int8 GEMMs) up to
    :data:`WIDE_PAIR_MAX_K`, ``"hh"`` (the ``hi`` halves only) for a longer self-product, None
    (not representable) for a longer product of two different tensors."""
    if int(term.a.shape[-1]) <= WIDE_PAIR_MAX_K:
        return "ab"
    return "hh" if term.a.source == term.b.source else None


#: Suffix naming a node's weights (its constant operands read against data) in precision
#: choices: ``"conv1:weights"`` holds node ``conv1``'s weights at 16 bits.
WEIGHT_SUFFIX = ":weights"


def _single_magnitude(c) -> bool:
    a = c.abs()
    return bool(((a == 0) | (a == a.amax(dim=-2, keepdim=True))).all())


def weight_side(graph, term) -> str | None:
    """The side (``"a"``/``"b"``) of ``term``'s constant operand if the other side is data (a
    weight: ``data @ W`` or ``W @ data``) and int8 cannot hold it exactly (constants with one
    magnitude per column, such as identities, ones and pooling matrices, are exact at int8;
    ``clamp`` constants such as additive masks saturate by design); else None."""
    ca, cb = graph.is_const(term.a), graph.is_const(term.b)
    if ca == cb or term.clamp:
        return None
    side = "a" if ca else "b"
    value = graph.const_value(term.a if ca else term.b)
    if side == "a":
        value = value.reshape(-1, 1)
    return None if _single_magnitude(value) else side


def weight_terms(graph, node) -> list[int]:
    """Indices of ``node``'s terms with a weight (:func:`weight_side`)."""
    return [i for i, t in enumerate(node.terms) if weight_side(graph, t) is not None]


def weight_problem(graph, name: str) -> str | None:
    """Why ``name`` (``"<node>:weights"``) cannot have 16-bit weights, or None if it can."""
    if not name.endswith(WEIGHT_SUFFIX):
        return f"a weight choice is named '<node>{WEIGHT_SUFFIX}'"
    base = name[: -len(WEIGHT_SUFFIX)]
    if base not in {n.name for n in graph.nodes}:
        return f"no GEMM node {base!r}"
    if not weight_terms(graph, graph.node(base)):
        return ("the node has no weight int8 cannot hold exactly (a constant read against data "
                "with more than one magnitude per column)")
    return None


def wide_weights(graph) -> list[str]:
    """``"<node>:weights"`` for every node with a 16-bit weight term, in graph order."""
    return [n.name + WEIGHT_SUFFIX for n in graph.nodes
            if any(t.const_bits == 16 for t in n.terms)]


def wide_tensors(graph) -> list[str]:
    """Graph inputs and node outputs held at 16 bits and read as GEMM operands (split into
    hi/lo), in order."""
    return [i.name for i in graph.inputs if i.bits == 16] + [
        n.name for n in graph.nodes if n.epilogue.out_bits == 16 and gemm_readers(graph, n.name)]


def _weight_cost(graph, node, name: str) -> dict:
    """:func:`wide_cost`'s row of a node's 16-bit weights: one more GEMM pass per weight term
    (its ``lo`` plane), none to split (constants are split offline), and the node's ``x256``
    epilogue."""
    terms = weight_terms(graph, node)
    macs = sum(int(node.terms[i].a.shape[-1]) * int(np.prod(node.shape)) for i in terms)
    return {"tensor": name, "module": node.module, "shape": tuple(node.shape),
            "consumer_passes": len(terms), "consumer_macs": macs, "split_passes": 0,
            "split_macs": 0, "epilogue_passes": 1}


def wide_cost(graph, names=None) -> list[dict]:
    """Extra work of each 16-bit operand tensor (default: :func:`wide_tensors`).

    A ``"<node>:weights"`` name costs what :func:`_weight_cost` says. Per tensor:
    ``consumer_passes`` (one extra GEMM pass per term reading it: the ``lo`` half;
    two for a self-product ``hi·lo``, ``lo·hi``; none for a ``hi``-only self-product),
    ``consumer_macs`` (their multiply-accumulates per sample), ``split_passes`` (the producer's two
    ``hi · (-128 I)`` GEMMs), ``split_macs`` (counted as element-wise, ``2 x numel``: only the
    diagonal blocks of the identity do work) and ``epilogue_passes`` (the producer's two split
    epilogues plus one ``x256`` epilogue per consuming node).
    """
    names = wide_tensors(graph) + wide_weights(graph) if names is None else list(names)
    rows = []
    for name in names:
        if name.endswith(WEIGHT_SUFFIX):
            rows.append(_weight_cost(graph, graph.node(name[: -len(WEIGHT_SUFFIX)]), name))
            continue
        node = graph.node(name) if graph.kind_of(name) == "node" else None
        readers = [(n, i, side) for n, i, side in gemm_readers(graph, name)
                   # a self-product "ab" is listed twice (2 passes); "hh" costs none
                   if not (n.terms[i].a.source == n.terms[i].b.source
                           and pair_split(n.terms[i]) == "hh")]
        macs = 0
        for n, i, _side in readers:
            t = n.terms[i]
            k = t.a.shape[-1]
            macs += k * int(np.prod(n.shape))
        if node is None:  # a graph input: the host writes both planes
            gi = next(i for i in graph.inputs if i.name == name)
            rows.append({"tensor": name, "module": "<input>", "shape": tuple(gi.shape),
                         "consumer_passes": len(readers), "consumer_macs": macs,
                         "split_passes": 0, "split_macs": 0,
                         "epilogue_passes": len({n.name for n, _, _ in readers})})
            continue
        numel = int(np.prod(node.shape))
        rows.append({"tensor": name, "module": node.module, "shape": tuple(node.shape),
                     "consumer_passes": len(readers), "consumer_macs": macs,
                     "split_passes": 2, "split_macs": 2 * numel,
                     "epilogue_passes": 2 + len({n.name for n, _, _ in readers})})
    return rows
