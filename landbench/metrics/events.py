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
  (the gap is taken in float64); -1 while censored; ``hit_evals``: the gradient evaluations the
  run had spent to reach that x_t (t for gradient descent, 2t for SAM, varying for LBFGS);
* ``evals``: the gradient evaluations a run spent, up to its divergence if it diverged;
* ``curve``: the loss at log-spaced steps (NaN after divergence).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def curve_steps(steps: int, points: int) -> list[int]:
    """Log-spaced steps in [0, steps]: 0, 1, then about ``points`` values up to ``steps`` inclusive."""
    grid = np.unique(np.round(np.logspace(0, np.log10(max(steps, 1)), max(points - 1, 1))).astype(int))
    return sorted({0, steps, *(int(s) for s in grid if s <= steps)})


def _first_index(condition: torch.Tensor) -> torch.Tensor:
    """Per column (and trailing dims), the first row index where ``condition`` holds, else its length."""
    n = condition.shape[0]
    rows = torch.arange(n, device=condition.device).view((-1,) + (1,) * (condition.dim() - 1))
    return torch.where(condition, rows, n).amin(0)


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
        self.evals_buffer = torch.empty((self.buffer.shape[0], batch), dtype=torch.int64, device=device)
        self.evals = full((batch,), 0, torch.int64)
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
        self.hit_evals = full((batch, len(targets)), -1, torch.int64) if f_star is not None else None
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

    def observe(self, step: int, loss: torch.Tensor, evals: int | torch.Tensor) -> None:
        """Record ``loss = f(x_step)`` per run and the gradient evaluations ``evals`` (one count for
        all runs, or one per run) each run spent to reach ``x_step``; steps come in order 0, 1, ..."""
        assert step == self._chunk_start + self._filled, "steps must be observed in order"
        self.buffer[self._filled].copy_(loss)
        if isinstance(evals, int):
            self.evals_buffer[self._filled].fill_(evals)
        else:
            self.evals_buffer[self._filled].copy_(evals)
        self._filled += 1
        if self._filled == self.buffer.shape[0]:
            self.flush()

    def flush(self) -> None:
        """Extract the events of the buffered steps (called when the buffer fills, and at the end)."""
        n = self._filled
        if n == 0:
            return
        losses, evals = self.buffer[:n], self.evals_buffer[:n]
        start = self._chunk_start
        steps = torch.arange(start, start + n, device=losses.device)
        # A run is observed up to (not including) its first non-finite loss.
        observed = torch.isfinite(losses).to(torch.int8).cummin(0).values.bool() & self.alive
        count = observed.sum(0)
        newly_diverged = self.alive & (count < n)
        self.diverged_step = torch.where(newly_diverged, start + count, self.diverged_step)
        at_end = evals.gather(0, count.clamp(max=n - 1)[None])[0]  # spent up to divergence, or so far
        self.evals = torch.where(self.alive, at_end, self.evals)
        last = losses.gather(0, (count - 1).clamp(min=0)[None])[0]
        self.last_loss = torch.where(count > 0, last, self.last_loss)
        self.alive = self.alive & ~newly_diverged
        if self.escape_steps is not None:
            below = losses.to(torch.float64)[:, :, None] <= self.escape_thresholds
            escaped = (observed & (steps >= 1)[:, None])[:, :, None] & below
            self._update(self.escape_steps, _first_index(escaped), start, n)
        if self.hit_steps is not None and self.hit_evals is not None:
            gap = losses.to(torch.float64) - self.f_star
            hit = observed[:, :, None] & (gap[:, :, None] <= self.targets)
            index = _first_index(hit)
            found = (self.hit_steps < 0) & (index < n)
            self.hit_evals.copy_(torch.where(found, evals.T.gather(1, index.clamp(max=n - 1)), self.hit_evals))
            self._update(self.hit_steps, index, start, n)
        index = self._curve_index.get(self._chunk_start)
        if index is not None:
            rows, columns = index
            picked = torch.where(observed[rows], losses[rows], float("nan"))
            self.curve[:, columns] = picked.T
        self._chunk_start += n
        self._filled = 0

    @staticmethod
    def _update(first_steps: torch.Tensor, index: torch.Tensor, start: int, n: int) -> None:
        """Set censored entries (-1) of ``first_steps`` to ``start + index`` where ``index < n``."""
        first_steps.copy_(torch.where((first_steps < 0) & (index < n), start + index, first_steps))
