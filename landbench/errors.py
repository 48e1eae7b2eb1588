"""Exceptions raised on bad input. Each message names what is valid."""

from __future__ import annotations


class LandbenchError(ValueError):
    """Base class of every error landbench raises on bad input."""


class SpecError(LandbenchError):
    """A problem or optimizer spec that cannot be parsed or names something unknown."""


class SuiteError(LandbenchError):
    """A TOML suite that is malformed: the message names the file and the key or line."""


class BatchSafetyError(LandbenchError):
    """An optimizer that couples the runs of a batch, so they cannot share one tensor."""


class StoreError(LandbenchError):
    """A results folder or file that cannot be written (a file in its place, read-only, a full disk)."""
