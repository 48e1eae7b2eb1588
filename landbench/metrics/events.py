"""First-passage events of B runs, from the loss history, on the device with no host synchronisation.

At every step t the engine hands over the noise-free loss ``f(x_t)`` of each run. The tracker
writes it into a ``(chunk, B)`` buffer (one device copy per step) and, every ``chunk`` steps,
extracts the events of those steps in a few vectorised operations. Per run it keeps:

* ``diverged_step``: the first t whose loss is NaN or inf (-1 if none). From then on the run is
  no longer observed: its events stop and its curve is NaN;
* ``last_loss``: the last finite loss before that, which becomes ``final_loss``;
* ``escape_steps``: for each escape threshold (one per designated saddle: halfway from the
  saddle's value down to the next level, f* for the last), the first t >= 1 with
  ``f(x_t) <= threshold``; -1 while censored;
* ``hit_steps``: for each target on the loss gap, the first t with ``f(x_t) - f* <= target``
  (the gap is taken in float64); -1 while censored;
* ``curve``: the loss at log-spaced steps (NaN after divergence).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

NEVER = np.iinfo(np.int64).max


def curve_steps(steps: int, points: int) -> list[int]:
    """Log-spaced steps in [0, steps]: 0, 1, then about ``points`` values up to ``steps`` inclusive."""
    grid = np.unique(np.round(np.logspace(0, np.log10(max(steps, 1)), max(points - 1, 1))).astype(int))
    return sorted({0, steps, *(int(s) for s in grid if s <= steps)})


def _first(condition: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Per column (and trailing dims), the first step where ``condition`` holds, else NEVER."""
    shape = (-1,) + (1,) * (condition.dim() - 1)
    return torch.where(condition, steps.view(shape), NEVER).amin(0)


class EventTracker:
    """Per-run events of a batch; see the module docstring for their definitions."""

    def __init__(
        self,
        batch: int,
        steps: int,
        *,
        escape_thresholds: Sequence[float],
        f_star: float | None,
        targets: Sequence[float],
        curve_points: int,
        device: torch.device,
        dtype: torch.dtype,
        chunk: int = 256,
    ) -> None:
        def full(shape: tuple[int, ...], value: float, kind: torch.dtype) -> torch.Tensor:
            return torch.full(shape, value, dtype=kind, device=device)

        self.buffer = torch.empty((min(chunk, steps + 1), batch), dtype=dtype, device=device)
        self._filled = 0
        self._chunk_start = 0
        self.alive = torch.ones(batch, dtype=torch.bool, device=device)
        self.diverged_step = full((batch,), -1, torch.int64)
        self.last_loss = full((batch,), float("nan"), dtype)
        self.escape_thresholds = torch.tensor(list(escape_thresholds), dtype=torch.float64, device=device)
        self.escape_steps = full((batch, len(escape_thresholds)), -1, torch.int64) if escape_thresholds else None
        self.f_star = f_star
        self.targets = torch.tensor(list(targets), dtype=torch.float64, device=device)
        self.hit_steps = full((batch, len(targets)), -1, torch.int64) if f_star is not None else None
        self.curve_steps = curve_steps(steps, curve_points)
        self.curve = full((batch, len(self.curve_steps)), float("nan"), dtype)
        # Which buffer rows go to which curve columns, per chunk, made on the device once, so that
        # a flush copies nothing from the host (which would wait for the device).
        length = self.buffer.shape[0]
        by_chunk: dict[int, tuple[list[int], list[int]]] = {}
        for column, step in enumerate(self.curve_steps):
            rows, columns = by_chunk.setdefault(step - step % length, ([], []))
            rows.append(step % length)
            columns.append(column)
        self._curve_index = {
            start: (torch.tensor(rows, device=device), torch.tensor(columns, device=device))
            for start, (rows, columns) in by_chunk.items()
        }

    def observe(self, step: int, loss: torch.Tensor) -> None:
        """Record ``loss = f(x_step)`` per run; steps must come in order 0, 1, 2, ..."""
        assert step == self._chunk_start + self._filled, "steps must be observed in order"
        self.buffer[self._filled].copy_(loss)
        self._filled += 1
        if self._filled == self.buffer.shape[0]:
            self.flush()

    def flush(self) -> None:
        """Extract the events of the buffered steps (called when the buffer fills, and at the end)."""
        n = self._filled
        if n == 0:
            return
        losses = self.buffer[:n]
        steps = torch.arange(self._chunk_start, self._chunk_start + n, device=losses.device)
        # A run is observed up to (not including) its first non-finite loss.
        observed = torch.isfinite(losses).to(torch.int8).cummin(0).values.bool() & self.alive
        count = observed.sum(0)
        newly_diverged = self.alive & (count < n)
        self.diverged_step = torch.where(newly_diverged, self._chunk_start + count, self.diverged_step)
        last = losses.gather(0, (count - 1).clamp(min=0)[None])[0]
        self.last_loss = torch.where(count > 0, last, self.last_loss)
        self.alive = self.alive & ~newly_diverged
        if self.escape_steps is not None:
            below = losses.to(torch.float64)[:, :, None] <= self.escape_thresholds
            escaped = (observed & (steps >= 1)[:, None])[:, :, None] & below
            self._update(self.escape_steps, _first(escaped, steps))
        if self.hit_steps is not None:
            gap = losses.to(torch.float64) - self.f_star
            hit = observed[:, :, None] & (gap[:, :, None] <= self.targets)
            self._update(self.hit_steps, _first(hit, steps))
        index = self._curve_index.get(self._chunk_start)
        if index is not None:
            rows, columns = index
            picked = torch.where(observed[rows], losses[rows], float("nan"))
            self.curve[:, columns] = picked.T
        self._chunk_start += n
        self._filled = 0

    @staticmethod
    def _update(first_steps: torch.Tensor, candidates: torch.Tensor) -> None:
        """Set censored entries (-1) of ``first_steps`` to ``candidates`` where those exist."""
        first_steps.copy_(torch.where((first_steps < 0) & (candidates != NEVER), candidates, first_steps))
