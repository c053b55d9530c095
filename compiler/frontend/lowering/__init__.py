"""Lowering: turn a captured aten graph into a :class:`~compiler.graph.MatrixGraph`.

:func:`lower` walks the fx graph in order. For each op:

- all tensor arguments constant -> evaluated now in PyTorch (constant folding);
- all tensor arguments host values and the op registered with
  :func:`~compiler.frontend.lowering.registry.register_host` -> a host pre-processing op;
- otherwise -> the registered lowering (:mod:`compiler.frontend.lowering.registry`), which
  emits GEMM nodes; an op with no lowering raises :class:`~compiler.graph.UnsupportedOpError`
  naming the op, the module path and the supported set. Nothing falls back to float.

Afterwards a fusion pass folds element-wise identity-GEMM nodes into the epilogue of the node that
produced their input (when that epilogue is still the identity and nothing else reads it), and
dead nodes are removed. Every module of this package is imported on first use, so lowerings in new
files register themselves.
"""

from __future__ import annotations

import importlib
import operator
import os
import pkgutil
import re

import torch
from torch.fx.node import map_aggregate

from compiler.frontend.capture import Captured
from compiler.frontend.lowering.registry import LoweringContext, is_host_op, lookup, supported_ops
from compiler.graph import (
    SUPPORT_HINT,
    ConvertError,
    GraphInput,
    MatrixGraph,
    Permute,
    Problem,
    Reshape,
    TensorRef,
    UnsupportedDtypeError,
    UnsupportedOpError,
    UnsupportedShapeError,
    summarise_problems,
)

__all__ = ["load_lowerings", "lower", "module_path", "source_location"]

_FLOAT = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_loaded = False
_FRAME = re.compile(r'File "([^"]+)", line (\d+)')
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


def load_lowerings() -> None:
    """Import every module of :mod:`compiler.frontend.lowering` (each registers its ops)."""
    global _loaded
    if _loaded:
        return
    for info in pkgutil.iter_modules(__path__):
        if info.name != "registry":
            importlib.import_module(f"{__name__}.{info.name}")
    _loaded = True


def module_path(node: torch.fx.Node) -> str:
    """Qualified ``nn.Module`` name an fx node came from (``""`` for the top level)."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    path = str(path)
    for prefix in ("L['self'].", "L__self__.", "self."):
        if path.startswith(prefix):
            path = path[len(prefix):]
    return "" if path in ("L['self']", "L__self__") else path


def source_location(node: torch.fx.Node) -> str:
    """``file:line`` of the innermost frame of ``node``'s stack trace outside PyTorch itself
    (the model code that called the op), or ``""``."""
    trace = node.meta.get("stack_trace") or ""
    frames = _FRAME.findall(trace)
    for path, line in reversed(frames):
        if not os.path.abspath(path).startswith(_TORCH_DIR):
            return f"{path}:{line}"
    return f"{frames[-1][0]}:{frames[-1][1]}" if frames else ""


def _stand_in(graph: MatrixGraph, ctx: LoweringContext, node: torch.fx.Node,
              tainted: set[str]):
    """A placeholder result for an op that could not be lowered, so that lowering goes on and
    reports every problem in one pass (the graph is never returned)."""

    def one(val):
        if not isinstance(val, torch.Tensor):
            return None
        name = ctx.fresh("unsupported")
        shape = tuple(int(s) for s in val.shape)
        graph.inputs.append(GraphInput(name, -1, shape, torch.float32))
        ctx.dtypes[name] = torch.float32
        tainted.add(name)
        return TensorRef(name, shape)

    val = node.meta.get("val")
    if isinstance(val, (tuple, list)):
        return tuple(one(v) for v in val)
    return one(val)


def _raise_problems(problems: list[tuple[Problem, Exception | None]]) -> None:
    """Raise one error for every problem found (see :class:`~compiler.graph.UnsupportedOpError`).
    """
    ps = [p for p, _ in problems]
    ops = [p for p in ps if p.kind == "op"]
    if len(problems) == 1 and problems[0][1] is not None:
        p, e = problems[0]
        if p.location:
            e.args = (f"{e} (at {p.location}); {SUPPORT_HINT}",)
        e.problems = ps
        raise e
    if ops:
        raise UnsupportedOpError(ops[0].op, ops[0].module, supported_ops(), problems=ps)
    first = problems[0][1]
    err = type(first)(summarise_problems(ps))
    err.problems = ps
    raise err from first


def _refs(obj) -> list[TensorRef]:
    out: list[TensorRef] = []
    map_aggregate(obj, lambda v: out.append(v) if isinstance(v, TensorRef) else None)
    return out


def _val_shape(node: torch.fx.Node):
    val = node.meta.get("val")
    if isinstance(val, torch.Tensor):
        return tuple(int(s) for s in val.shape), val.dtype
    return None, None


def lower(captured: Captured, *, host_inputs: set[int] | None = None,
          segments: int | dict = 16) -> MatrixGraph:
    """Lower a captured graph to a matrix graph.

    Parameters
    ----------
    captured : Captured
        From :func:`compiler.frontend.capture.capture`.
    host_inputs : set of int, optional
        Positions of user inputs that are host data (masks, ids): ops on them may run as host
        pre-processing. Non-float inputs are always host data.
    segments : int or dict
        PWL segment budget(s), passed to the lowering context.
    """
    load_lowerings()
    host_inputs = set(host_inputs or ())
    gm = captured.graph_module
    graph = MatrixGraph(capture_method=captured.method)
    ctx = LoweringContext(graph, segments=segments)
    ctx.dtypes = {}  # tensor name -> torch dtype of its values
    host_names: set[str] = set()
    env: dict[str, object] = {}
    problems: list[tuple[Problem, Exception | None]] = []
    tainted: set[str] = set()  # results computed from a stand-in of an unsupported op
    user_index = {n: i for i, n in enumerate(captured.user_inputs)}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if node.name in captured.constants:
                env[node.name] = captured.constants[node.name].detach()
                continue
            shape, dtype = _val_shape(node)
            idx = user_index[node.name]
            graph.inputs.append(GraphInput(node.name, idx, shape, dtype))
            env[node.name] = TensorRef(node.name, shape)
            ctx.dtypes[node.name] = dtype
            if idx in host_inputs or dtype not in _FLOAT:
                host_names.add(node.name)
            continue
        if node.op == "get_attr":
            env[node.name] = getattr(gm, node.target)
            continue
        if node.op == "output":
            outs = []
            for v in torch.utils._pytree.tree_leaves(map_aggregate(node.args[0],
                                                                   lambda n: env[n.name])):
                if not isinstance(v, TensorRef):
                    raise ConvertError(f"a model output is a constant ({type(v).__name__}); "
                                       "only data-dependent outputs are supported")
                if v.source in host_names:
                    raise ConvertError("a model output is computed on the host only")
                outs.append(v)
            graph.outputs = outs
            continue
        if node.op != "call_function":
            raise ConvertError(f"unsupported fx node kind {node.op} ({node.target})")
        args = map_aggregate(node.args, lambda n: env[n.name] if isinstance(n, torch.fx.Node)
                             else n)
        kwargs = map_aggregate(node.kwargs, lambda n: env[n.name]
                               if isinstance(n, torch.fx.Node) else n)
        ctx.node, ctx.module, ctx.aten = node, module_path(node), str(node.target)
        refs = _refs((args, kwargs))
        if node.target is operator.getitem:
            env[node.name] = args[0][args[1]]
            continue
        if not refs:
            with torch.no_grad():
                env[node.name] = node.target(*args, **kwargs)
            graph.folded.append(f"{ctx.module or '<top>'}: {node.target} on constants")
            continue
        if all(r.source in host_names for r in refs) and is_host_op(node.target):
            shape, dtype = _val_shape(node)
            ref = ctx.host(node.target, args, kwargs, shape=shape, dtype=dtype)
            host_names.add(ref.source)
            ctx.dtypes[ref.source] = dtype
            env[node.name] = ref
            continue
        handler = lookup(node.target)
        downstream = any(r.source in tainted for r in refs)
        if handler is None:
            problems.append((Problem(ctx.aten, ctx.module, source_location(node), "", "op",
                                     downstream), None))
            env[node.name] = _stand_in(graph, ctx, node, tainted)
            continue
        try:
            for r in refs:
                dt = ctx.dtypes.get(r.source, torch.float32)
                if dt not in _FLOAT and r.source in host_names and not getattr(
                        handler, "accepts_int", False):
                    raise UnsupportedDtypeError(
                        f"{ctx.aten} in module {ctx.module or '<top>'!r}: operand {r.source} "
                        f"has dtype {dt}; GEMM operands must be floating point (int inputs are "
                        "allowed only in host pre-processing: masks, ids)"
                    )
            result = handler(ctx, *args, **kwargs)
        except (UnsupportedShapeError, UnsupportedDtypeError) as e:
            kind = "dtype" if isinstance(e, UnsupportedDtypeError) else "args"
            detail = getattr(e, "detail", None) or str(e)
            problems.append((Problem(ctx.aten, ctx.module, source_location(node), detail, kind,
                                     downstream), e))
            env[node.name] = _stand_in(graph, ctx, node, tainted)
            continue
        if downstream:
            for r in _refs(result) if not isinstance(result, torch.Tensor) else ():
                tainted.add(r.source)
        shape, _ = _val_shape(node)
        if isinstance(result, TensorRef):
            if shape is not None and tuple(result.shape) != shape:
                raise ConvertError(
                    f"internal: lowering of {ctx.aten} in {ctx.module!r} produced shape "
                    f"{result.shape}, traced shape is {shape}"
                )
            ctx.dtypes.setdefault(result.source, torch.float32)
        env[node.name] = result
    if problems:
        _raise_problems(problems)
    fuse_pointwise(graph)
    remove_dead(graph)
    widen_outputs(graph)
    graph.check()
    return graph


def widen_outputs(graph: MatrixGraph) -> None:
    """Network outputs that no node reads are written as int32 (no int8 rounding of logits)."""
    for o in graph.outputs:
        if graph.kind_of(o.source) != "node":
            continue
        node = graph.node(o.source)
        readers = _uses(graph, o.source) - sum(x.source == o.source for x in graph.outputs)
        if readers == 0 and node.epilogue.out_bits == 8 and node.epilogue.scale_like is None:
            node.epilogue.out_bits = 32


def _pure_views(ref: TensorRef) -> bool:
    return all(isinstance(v, (Reshape, Permute)) for v in ref.views)


def _uses(graph: MatrixGraph, name: str) -> int:
    n = sum(o.source == name for o in graph.outputs)
    for node in graph.nodes:
        for t in node.terms:
            n += (t.a.source == name) + (t.b.source == name)
        rs = node.epilogue.row_scale
        n += rs is not None and rs.source == name
    for h in graph.host_ops:
        n += sum(r.source == name for r in _refs((h.args, h.kwargs)))
    return n


def _rename(graph: MatrixGraph, old: str, new_ref_views) -> None:
    """Point every reference to ``old`` at ``new_ref_views(ref)``."""

    def fix(ref):
        return new_ref_views(ref) if isinstance(ref, TensorRef) and ref.source == old else ref

    for node in graph.nodes:
        for t in node.terms:
            t.a, t.b = fix(t.a), fix(t.b)
        if node.epilogue.row_scale is not None:
            node.epilogue.row_scale = fix(node.epilogue.row_scale)
        if node.epilogue.scale_like == old:
            node.epilogue.scale_like = new_ref_views(TensorRef(old, graph_shape(graph, old))).source
    graph.outputs = [fix(o) for o in graph.outputs]


def graph_shape(graph: MatrixGraph, name: str):
    """Shape of ``name``, or () if it no longer exists (renamed references only need the source)."""
    try:
        return graph.shape_of(name)
    except KeyError:
        return ()


def fuse_pointwise(graph: MatrixGraph) -> int:
    """Fold element-wise nodes ``f(c * x)`` into the producer of ``x``; returns how many.

    A node P qualifies when it has one term ``x @ (c * I)`` with ``x`` a node output seen through
    reshapes/permutes only, no bias, no row scale and no column scale; the producer X must have
    an identity epilogue with int8 output, no ``scale_like``, no other reader, and must not be the
    ``scale_like`` target of any node (folding changes its values). References to P, including
    ``scale_like`` names, are renamed to X.
    """
    fused = 0
    changed = True
    while changed:
        changed = False
        for p in list(graph.nodes):
            if len(p.terms) != 1 or p.bias is not None or p.epilogue.row_scale is not None:
                continue
            if p.epilogue.col_scale is not None:
                continue  # a per-column scale of P's layout (layer scale) is not X's to take
            t = p.terms[0]
            if not graph.is_const(t.b) or graph.is_const(t.a) or not _pure_views(t.a):
                continue
            if graph.kind_of(t.a.source) != "node":
                continue
            b = graph.const_value(t.b)
            if b.ndim != 2 or b.shape[0] != b.shape[1]:
                continue
            c = float(b[0, 0])
            if not torch.equal(b, torch.eye(b.shape[0]) * c) or c == 0:
                continue
            x = graph.node(t.a.source)
            ex, ep = x.epilogue, p.epilogue
            if ex.function is not None or ex.out_bits != 8 or ex.scale_like is not None:
                continue
            if ex.row_scale is not None and p.epilogue.function is not None and c != 1.0:
                continue
            if _uses(graph, x.name) != 1 or tuple(t.a.shape) != tuple(p.shape):
                continue
            if any(n.epilogue.scale_like == x.name for n in graph.nodes):
                continue  # folding would change the values another node is quantised like
            cs = 1.0 if ex.col_scale is None else ex.col_scale
            if ex.row_scale is not None and c != 1.0:
                continue
            ex.col_scale = cs * c if c != 1.0 else ex.col_scale
            ex.function = ep.function
            ex.out_bits = ep.out_bits
            ex.scale_like = ep.scale_like
            x.aten = f"{x.aten}+{p.aten}"
            views = t.a.views
            graph.nodes.remove(p)
            _rename(graph, p.name, lambda r, views=views, x=x: TensorRef(
                x.name, x.shape, (*views, *r.views)))
            fused += 1
            changed = True
            break
    return fused


def remove_dead(graph: MatrixGraph) -> None:
    """Drop nodes, host ops and constants that no output depends on."""
    live = {o.source for o in graph.outputs}
    keep = []
    for node in reversed(graph.nodes):
        if node.name in live:
            keep.append(node)
            for t in node.terms:
                live |= {t.a.source, t.b.source}
            if node.epilogue.row_scale is not None:
                live.add(node.epilogue.row_scale.source)
            if node.bias is not None:
                live.add(node.bias)
    graph.nodes = list(reversed(keep))
    hk = []
    for h in reversed(graph.host_ops):
        if h.name in live:
            hk.append(h)
            live |= {r.source for r in _refs((h.args, h.kwargs))}
    graph.host_ops = list(reversed(hk))
    graph.constants = {k: v for k, v in graph.constants.items() if k in live}

