"""Capture a PyTorch module as an aten-level fx graph.

The primary path is :func:`torch.export.export` (non-strict), which gives the "training IR":
high-level aten ops (``aten.linear``, ``aten.conv2d``, ``aten.batch_norm``, ``aten.layer_norm``,
``aten.gelu``, ``aten.scaled_dot_product_attention``, ...) with every node's ``nn_module_stack``.
When export cannot trace a model (some Python constructs, unsupported tracing features), the
fallback is FX tracing with :func:`torch.fx.experimental.proxy_tensor.make_fx` in pre-dispatch
mode, which produces the same op set; the report states which path was used and why.

After capture, :func:`rewrite_gelu_tanh` replaces Hugging Face's ``gelu_new`` formula written out
in elementary ops (``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * pow(x, 3))))``) with the
single op it equals, ``aten.gelu(x, approximate="tanh")``, so it becomes one PWL epilogue. Only
that exact pattern is rewritten (constants within 1e-6 relative, every intermediate used only
inside the pattern); any other ``pow`` stays in the graph and fails lowering with
:class:`compiler.graph.UnsupportedOpError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from compiler.graph import ConvertError, UnsupportedDtypeError

__all__ = ["Captured", "capture", "rewrite_gelu_tanh"]

_FLOAT = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


@dataclass
class Captured:
    """An fx graph plus what its placeholders mean.

    Attributes
    ----------
    graph_module : torch.fx.GraphModule
        aten-level graph; placeholders are parameters/buffers/constants or user inputs.
    constants : dict
        placeholder name -> tensor, for parameters, buffers and lifted constants.
    user_inputs : list of str
        Placeholder names of the user inputs, in call order.
    method : str
        ``"torch.export"`` or ``"fx (make_fx pre-dispatch)"``.
    note : str
        Why the fallback was used (empty for torch.export).
    rewrites : list of str
        Capture-time pattern rewrites applied (one line each, e.g. a ``gelu_new`` formula
        replaced by ``aten.gelu(approximate="tanh")``).
    """

    graph_module: torch.fx.GraphModule
    constants: dict[str, torch.Tensor] = field(default_factory=dict)
    user_inputs: list[str] = field(default_factory=list)
    method: str = "torch.export"
    note: str = ""
    rewrites: list[str] = field(default_factory=list)


def _check_inputs(example_inputs: tuple) -> None:
    if not isinstance(example_inputs, tuple):
        raise ConvertError(f"example_inputs must be a tuple of tensors, got "
                           f"{type(example_inputs).__name__}")
    for i, x in enumerate(example_inputs):
        if not isinstance(x, torch.Tensor):
            raise ConvertError(f"example input {i} is a {type(x).__name__}; only tensors are "
                               "supported")
        if x.dtype not in _FLOAT and x.dtype not in (torch.int64, torch.int32, torch.bool):
            raise UnsupportedDtypeError(
                f"example input {i} has dtype {x.dtype}; supported: float32/float16/bfloat16/"
                "float64 features, int64/int32/bool indices or masks"
            )


def _export(model: nn.Module, example_inputs: tuple) -> Captured:
    ep = torch.export.export(model, example_inputs, strict=False)
    sig = ep.graph_signature
    state = dict(ep.state_dict)
    consts: dict[str, torch.Tensor] = {}
    user: list[str] = []
    from torch.export.graph_signature import InputKind

    for spec in sig.input_specs:
        name = spec.arg.name
        if spec.kind == InputKind.USER_INPUT:
            user.append(name)
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            if spec.target in state:
                consts[name] = state[spec.target]
            else:
                consts[name] = ep.constants[spec.target]
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            consts[name] = ep.constants[spec.target]
        else:
            raise ConvertError(f"unsupported exported input kind {spec.kind} for {name}")
    return Captured(ep.graph_module, consts, user, "torch.export", "")


def _make_fx(model: nn.Module, example_inputs: tuple, reason: str) -> Captured:
    from torch.fx.experimental.proxy_tensor import make_fx

    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    names = list(params) + list(buffers)
    tensors = [params[n] for n in params] + [buffers[n] for n in buffers]
    n_state = len(tensors)

    def fn(*flat):
        state = dict(zip(names, flat[:n_state], strict=True))
        return torch.func.functional_call(model, state, flat[n_state:])

    gm = make_fx(fn, pre_dispatch=True, record_module_stack=True)(*tensors, *example_inputs)
    phs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    consts = {ph.name: t.detach() for ph, t in zip(phs[:n_state], tensors, strict=True)}
    user = [ph.name for ph in phs[n_state:]]
    return Captured(gm, consts, user, "fx (make_fx pre-dispatch)", reason)


def capture(model: nn.Module, example_inputs: tuple) -> Captured:
    """Capture ``model`` (eval mode) called on ``example_inputs``.

    Raises
    ------
    ConvertError
        If the model is in training mode, inputs are not tensors, or both capture paths fail.
    """
    if not isinstance(model, nn.Module):
        raise ConvertError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if model.training:
        raise ConvertError("model is in training mode; call model.eval() before converting")
    _check_inputs(example_inputs)
    with torch.no_grad():
        try:
            captured = _export(model, example_inputs)
        except ConvertError:
            raise
        except Exception as e:  # noqa: BLE001 - any export failure -> documented FX fallback
            reason = f"torch.export failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
            try:
                captured = _make_fx(model, example_inputs, reason)
            except Exception as e2:
                raise ConvertError(
                    f"cannot capture the model: {reason}; FX fallback failed: "
                    f"{type(e2).__name__}: {str(e2).splitlines()[0][:200]}"
                ) from e2
    captured.rewrites = rewrite_gelu_tanh(captured.graph_module)
    return captured


# ---- capture-time rewrites ------------------------------------------------------------------

_MUL = ("aten.mul.Tensor", "aten.mul.Scalar")
_ADD = ("aten.add.Tensor", "aten.add.Scalar")
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _is(node, targets: tuple[str, ...]) -> bool:
    return (isinstance(node, torch.fx.Node) and node.op == "call_function"
            and str(node.target) in targets)


def _close(value, want: float) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and abs(value - want) <= 1e-6 * abs(want))


def _scalar_operand(node, want: float):
    """For a binary ``node`` with one operand ``want`` (a Python number), the other operand."""
    if node.kwargs.get("alpha", 1) != 1 or len(node.args) != 2:
        return None
    a, b = node.args
    if _close(b, want):
        return a
    if _close(a, want):
        return b
    return None


def _node_pair(node, pick):
    """``(p, q)`` where ``p`` is the operand of binary ``node`` satisfying ``pick`` and ``q`` the
    other one, or None."""
    if node.kwargs.get("alpha", 1) != 1 or len(node.args) != 2:
        return None
    a, b = node.args
    if pick(a):
        return a, b
    if pick(b):
        return b, a
    return None


def _match_gelu_new(out) -> tuple[torch.fx.Node, list[torch.fx.Node]] | None:
    """Match ``out`` as the root of HF's ``gelu_new``; returns ``(x, pattern nodes)``."""
    if not _is(out, _MUL):
        return None
    # 0.5 * x * (1 + tanh(.)) as mul(mul(x, 0.5), one_plus) or mul(mul(x, one_plus), 0.5).
    pair = _node_pair(out, lambda n: _is(n, _ADD) and _scalar_operand(n, 1.0) is not None)
    if pair is not None:
        one_plus, half_x = pair
        if not _is(half_x, _MUL):
            return None
        x = _scalar_operand(half_x, 0.5)
        inner = [half_x]
    else:
        prod = _scalar_operand(out, 0.5)
        if not _is(prod, _MUL):
            return None
        pair = _node_pair(prod, lambda n: _is(n, _ADD) and _scalar_operand(n, 1.0) is not None)
        if pair is None:
            return None
        one_plus, x = pair
        inner = [prod]
    if not isinstance(x, torch.fx.Node):
        return None
    th = _scalar_operand(one_plus, 1.0)
    if not _is(th, ("aten.tanh.default",)):
        return None
    scaled = th.args[0]
    if not _is(scaled, _MUL):
        return None
    s = _scalar_operand(scaled, _SQRT_2_OVER_PI)
    if not _is(s, _ADD):
        return None
    pair = _node_pair(s, lambda n: n is x)
    if pair is None:
        return None
    cubic = pair[1]
    if not _is(cubic, _MUL):
        return None
    pw = _scalar_operand(cubic, 0.044715)
    if not _is(pw, ("aten.pow.Tensor_Scalar",)) or pw.args[0] is not x or not _close(
            pw.args[1], 3.0):
        return None
    nodes = [pw, cubic, s, scaled, th, one_plus, *inner]
    if any(len(n.users) != 1 for n in nodes):
        return None
    return x, [*nodes, out]


def rewrite_gelu_tanh(gm: torch.fx.GraphModule) -> list[str]:
    """Replace every HF ``gelu_new`` subgraph of ``gm`` with ``aten.gelu(x, approximate="tanh")``.

    The pattern is ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * pow(x, 3))))`` with the
    products and sums in either operand order; its intermediates must have no users outside it.

    Parameters
    ----------
    gm : torch.fx.GraphModule
        Captured aten graph, modified in place (and recompiled when anything changed).

    Returns
    -------
    list of str
        One line per rewrite: the replaced node and its module path.
    """
    done: list[str] = []
    for node in list(gm.graph.nodes):
        if node.graph is not gm.graph or node.op != "call_function":
            continue
        m = _match_gelu_new(node)
        if m is None:
            continue
        x, nodes = m
        with gm.graph.inserting_after(node):
            new = gm.graph.call_function(torch.ops.aten.gelu.default, (x,),
                                         {"approximate": "tanh"})
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        for n in reversed(nodes):
            gm.graph.erase_node(n)
        stack = new.meta.get("nn_module_stack") or {}
        where = next(reversed(stack.values()))[0] if stack else ""
        done.append(f"{node.name}: gelu_new formula (pow/mul/add/tanh) -> "
                    f"aten.gelu(approximate='tanh') in {where or '<top>'}")
    if done:
        gm.graph.lint()
        gm.recompile()
    return done
