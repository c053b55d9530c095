"""Capture a PyTorch module as an aten-level fx graph.

The primary path is :func:`torch.export.export` (non-strict), which gives the "training IR":
high-level aten ops (``aten.linear``, ``aten.conv2d``, ``aten.batch_norm``, ``aten.layer_norm``,
``aten.gelu``, ``aten.scaled_dot_product_attention``, ...) with every node's ``nn_module_stack``.
When export cannot trace a model (some Python constructs, unsupported tracing features), the
fallback is FX tracing with :func:`torch.fx.experimental.proxy_tensor.make_fx` in pre-dispatch
mode, which produces the same op set; the report states which path was used and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from compiler.graph import ConvertError, UnsupportedDtypeError

__all__ = ["Captured", "capture"]

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
    """

    graph_module: torch.fx.GraphModule
    constants: dict[str, torch.Tensor] = field(default_factory=dict)
    user_inputs: list[str] = field(default_factory=list)
    method: str = "torch.export"
    note: str = ""


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
            return _export(model, example_inputs)
        except ConvertError:
            raise
        except Exception as e:  # noqa: BLE001 - any export failure -> documented FX fallback
            reason = f"torch.export failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
            try:
                return _make_fx(model, example_inputs, reason)
            except Exception as e2:
                raise ConvertError(
                    f"cannot capture the model: {reason}; FX fallback failed: "
                    f"{type(e2).__name__}: {str(e2).splitlines()[0][:200]}"
                ) from e2
