"""The back end's error type."""

from __future__ import annotations

from hw.config import AcceleratorConfig
from hw.errors import NmxError

__all__ = ["CompileError"]


class CompileError(NmxError, ValueError):
    """A node the back end cannot compile for a config: names the node, its module path, the
    limit that was hit and the config. Never replaced by a host fallback."""

    def __init__(self, what: str, limit: str, config: AcceleratorConfig | None = None):
        cfg = "" if config is None else (
            f" [config {config.rows}x{config.cols} {config.fingerprint}: scratchpad "
            f"{config.scratchpad_rows} rows, accumulator {config.accumulator_rows} rows, "
            f"{config.bias_entries} bias entries, {config.pwl_functions} PWL functions]")
        super().__init__(f"{what}: {limit}{cfg}")
        self.what = what
        self.limit = limit
