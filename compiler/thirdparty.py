"""Importing model libraries whose wheels do not match the installed torch build.

The ``torchvision`` wheels on the package index are built against CUDA torch. With a CPU torch
their C extension (``torchvision/_C.so``: NMS, RoI-align, image decoding) cannot load, and
``import torchvision`` then fails in its fake-kernel registrations with "operator
torchvision::nms does not exist": ``torchvision/_meta_registrations.py`` registers fake kernels
for ``torchvision::nms`` and ``torchvision::qnms`` without checking that the extension loaded
(its other registrations do check). ``timm`` imports ``torchvision``, so it fails the same way.

:func:`import_torchvision` is the one place that deals with this: when the extension does not
load, it declares the schemas of those two operators (as the extension would) before importing
``torchvision``, so the import succeeds. No kernel is registered: calling
``torchvision.ops.nms`` still fails, with torchvision's own "Couldn't load custom C++ ops"
message, and ``torchvision.extension._has_ops()`` stays False. The model definitions
(``torchvision.models``, ``timm``) are pure Python and unaffected. With a torchvision built for
the installed torch (e.g. from PyTorch's CPU wheel index) nothing is declared.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

import torch

__all__ = [
    "import_timm",
    "import_torchvision",
    "import_transformers",
    "torchvision_extension_loaded",
]

#: Schemas of the operators torchvision registers fake kernels for unconditionally (as declared
#: by its C++ extension, ``torchvision/csrc/ops/nms.cpp`` and ``quantized/cpu/qnms_kernel.cpp``).
_UNGUARDED_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)

_declared: torch.library.Library | None = None
_extension_loaded: bool | None = None


def _load_extension() -> bool:
    """Try to load ``torchvision/_C.so`` the way torchvision does; whether it loaded."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("torchvision is not installed (pip install -e '.[dev]')")
    folder = list(spec.submodule_search_locations)[0]
    path = os.path.join(folder, "_C.so")
    if not os.path.exists(path):
        return False
    try:
        torch.ops.load_library(path)
    except OSError:
        return False
    return True


def torchvision_extension_loaded() -> bool:
    """Whether torchvision's C extension loaded (False: its detection ops are unavailable)."""
    import_torchvision()
    return bool(_extension_loaded)


def import_torchvision() -> ModuleType:
    """``import torchvision``, declaring its unguarded operator schemas if its extension fails.

    Returns
    -------
    module
        The ``torchvision`` module.
    """
    global _declared, _extension_loaded
    if "torchvision" in sys.modules and _extension_loaded is not None:
        return sys.modules["torchvision"]
    if _extension_loaded is None:
        _extension_loaded = _load_extension()
        if not _extension_loaded and _declared is None:
            lib = torch.library.Library("torchvision", "FRAGMENT")
            for schema in _UNGUARDED_SCHEMAS:
                name = schema.split("(", 1)[0]
                if not hasattr(torch.ops.torchvision, name):
                    lib.define(schema)
            _declared = lib
    import torchvision

    return torchvision


def import_timm() -> ModuleType:
    """``import timm`` (it imports torchvision: see :func:`import_torchvision`)."""
    import_torchvision()
    import timm

    return timm


def import_transformers() -> ModuleType:
    """``import transformers`` (its image utilities import torchvision when it is installed)."""
    import_torchvision()
    import transformers

    return transformers
