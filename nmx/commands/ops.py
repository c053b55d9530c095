"""``nmx ops``: the PyTorch (aten) ops the converter lowers, and the PWL functions.

Ops are listed by name without overload (``aten.conv2d`` covers ``aten.conv2d.default`` and
``aten.conv2d.padding``); internal ops that a capture inserts on its own (``aten._to_copy``,
``aten._assert_tensor_metadata``, ...) are left out. ``--host`` adds the ops that run as host
pre-processing on masks and ids. docs/compiler.md, "Adding a lowering", shows how to add one.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "public_ops", "run"]

#: Ops a capture inserts by itself (never written by a user), beyond the ``aten._*`` names.
_INTERNAL = {"aten.alias", "aten.lift_fresh_copy", "aten.detach"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nmx ops``."""
    parser.add_argument("--host", action="store_true",
                        help="also list the ops allowed as host pre-processing (masks, ids)")


def public_ops(keys) -> list[str]:
    """Registry keys reduced to user-facing op names (no overload, no internal ops), sorted."""
    names = set()
    for k in keys:
        parts = k.split(".")
        name = ".".join(parts[:2]) if parts[0] == "aten" else k
        if name.startswith("aten._") or name in _INTERNAL:
            continue
        names.add(name)
    return sorted(names)


def run(args: argparse.Namespace) -> int:
    """Print the lists."""
    from compiler.frontend.lowering import load_lowerings
    from compiler.frontend.lowering.registry import HOST_OPS, LOWERINGS
    from compiler.pwl import FUNCTIONS
    from compiler.pwl.functions import PARAMETERISED

    load_lowerings()
    ops = public_ops(LOWERINGS)
    print(f"lowered ops ({len(ops)}):")
    for name in ops:
        print(f"  {name}")
    fns = sorted(FUNCTIONS)
    print(f"PWL functions ({len(fns)}; with parameters: "
          f"{', '.join(f'{k}({chr(44).join(v[1])})' for k, v in PARAMETERISED.items())}):")
    print("  " + ", ".join(fns))
    if args.host:
        host = public_ops(HOST_OPS)
        print(f"host pre-processing ops ({len(host)}), on masks and ids only:")
        for name in host:
            print(f"  {name}")
    return 0
