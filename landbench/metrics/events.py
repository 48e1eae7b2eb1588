"""First-passage and holding events of B runs, from the loss history, on the device with no host sync.

At every step t the engine hands over the noise-free loss ``f(x_t)`` of each run. The tracker
writes it into a ``(chunk, B)`` buffer (one device copy per step) and, every ``chunk`` steps,
extracts the events of those steps in a few vectorised operations. Per run it keeps:

* ``diverged_step``: the first t whose loss is NaN or inf (-1 if none). From then on the run is
  no longer observed: its events stop and its curve is NaN;
* ``last_loss``: the last finite loss before that;
* ``escape_steps``: for each escape threshold (one per designated saddle: halfway from the
  saddle's value down to the next level, f* for the last), the first t >= 1 with
  ``f(x_t) <= threshold``; -1 while censored;
* ``held_steps``: for each target on the loss gap, the first t from which the gap stays at most
  the target up to the last step observed, ``min {t : f(x_s) - f* <= target for all t <= s <= T}``
  (the gap in float64). A step that is not observed (NaN or inf, and every step after a
  divergence) breaks a hold, so a run that diverged holds nothing. -1 while the last step breaks
  it. ``held_evals``: the gradient evaluations the run had spent to reach that x_t;
* ``first_hit_steps``, ``first_hit_evals``: COCO's first-hitting time of each target, the first t
  with ``f(x_t) - f* <= target`` before any divergence, whatever came after (-1 if never);
* ``evals``: the gradient evaluations each run had spent by the last step observed (t for
  gradient descent, 2t for SAM, varying for LBFGS), counted for every run, diverged or not;
* ``curve``: the loss at log-spaced steps (NaN after divergence).

Which of these is an outcome, and what a diverged or censored run means for it, is decided in
:mod:`landbench.outcomes`, not here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def curve_steps(steps: int, points: int) -> list[int]:
    """Log-spaced steps in [0, steps]: 0, 1, then about ``points`` values up to ``steps`` inclusive."""
    grid = np.unique(np.round(np.logspace(0, np.log10(max(steps, 1)), max(points - 1, 1))).astype(int))
    return sorted({0, steps, *(int(s) for s in grid if s <= steps)})


def _first_at_most(values: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """``(B, K)``: per column b of ``values`` ``(n, B)`` and level k, the first row t with
    ``values[t, b] <= levels[k]``, else n. The running minimum down a column is non-increasing and
    is at most a level exactly from that row on, so one sorted search per level finds it (no
    ``(n, B, K)`` tensor)."""
    running_min = values.T.cummin(1).values.neg().contiguous()  # (B, n), non-decreasing along each row
    return torch.searchsorted(running_min, levels.neg().expand(values.shape[1], -1).contiguous())


def _last_above(values: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """``(B, K)``: per column b of ``values`` ``(n, B)`` and level k, the last row t with
    ``values[t, b] > levels[k]``, else -1. The maximum from row t to the end is non-increasing in t
    and above a level exactly up to that row."""
    suffix_max = values.T.flip(1).cummax(1).values.flip(1).neg().contiguous()  # (B, n), non-decreasing
    return torch.searchsorted(suffix_max, levels.neg().expand(values.shape[1], -1).contiguous()) - 1


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
        # the buffers' rows as views made once: a view per step costs more than its copy on a small batch
        self._loss_rows = self.buffer.unbind(0)
        self._evals_rows = self.evals_buffer.unbind(0)
        # evaluation counts given as one int for all runs wait on the host until the flush
        self._counts: list[int] | None = []
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
        with_targets = (batch, len(targets)) if f_star is not None else None
        self.first_hit_steps = full(with_targets, -1, torch.int64) if with_targets else None
        self.first_hit_evals = full(with_targets, -1, torch.int64) if with_targets else None
        # A hold starts at step 0 until a step breaks it; a break at a chunk's last step starts the
        # next hold at the next chunk's first step, whose evaluation count is not known yet.
        self.held_steps = full(with_targets, 0, torch.int64) if with_targets else None
        self.held_evals = full(with_targets, 0, torch.int64) if with_targets else None
        self._hold_pending = full(with_targets, 0, torch.bool) if with_targets else None
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
        self._loss_rows[self._filled].copy_(loss)
        if isinstance(evals, int) and self._counts is not None:
            self._counts.append(evals)
        else:
            self._write_counts()
            self._counts = None  # per-run counts from here to the end of the chunk
            if isinstance(evals, int):
                self._evals_rows[self._filled].fill_(evals)
            else:
                self._evals_rows[self._filled].copy_(evals)
        self._filled += 1
        if self._filled == self.buffer.shape[0]:
            self.flush()

    def _write_counts(self) -> None:
        """Write the counts held on the host into the first rows of the evaluation buffer, without
        waiting for the device: ``a + k i`` (the same k evaluations a step, the usual case) as one
        kernel, anything else through one copy."""
        counts = self._counts
        if not counts:
            return
        rows = self.evals_buffer[: len(counts)]
        step = counts[1] - counts[0] if len(counts) > 1 else 0
        if all(b - a == step for a, b in zip(counts, counts[1:])):
            column = torch.arange(len(counts), device=rows.device, dtype=torch.int64).mul_(step).add_(counts[0])
        else:
            column = torch.tensor(counts, dtype=torch.int64).to(rows.device)
        rows.copy_(column[:, None].expand_as(rows))
        self._counts = []

    def flush(self) -> None:
        """Extract the events of the buffered steps (called when the buffer fills, and at the end)."""
        n = self._filled
        if n == 0:
            return
        self._write_counts()
        self._counts = []
        losses, evals = self.buffer[:n], self.evals_buffer[:n]
        start = self._chunk_start
        steps = torch.arange(start, start + n, device=losses.device)
        # A run is observed up to (not including) its first non-finite loss.
        observed = torch.isfinite(losses).to(torch.int8).cumprod(0).bool() & self.alive
        count = observed.sum(0)
        newly_diverged = self.alive & (count < n)
        self.diverged_step = torch.where(newly_diverged, start + count, self.diverged_step)
        self.evals = evals[n - 1].clone()
        last = losses.gather(0, (count - 1).clamp(min=0)[None])[0]
        self.last_loss = torch.where(count > 0, last, self.last_loss)
        self.alive = self.alive & ~newly_diverged
        inf = math.inf  # a Python scalar: a tensor made from it here would be a host-to-device copy
        if self.escape_steps is not None:
            # escaping counts from step 1 on, and only while observed
            level = torch.where(observed & (steps >= 1)[:, None], losses.to(torch.float64), inf)
            self._update(self.escape_steps, _first_at_most(level, self.escape_thresholds), start, n)
        if self.first_hit_steps is not None:
            gap = torch.where(observed, losses.to(torch.float64) - self.f_star, inf)  # unobserved: never within
            index = _first_at_most(gap, self.targets)
            found = (self.first_hit_steps < 0) & (index < n)
            evals_at = evals.T.gather(1, index.clamp(max=n - 1))
            self.first_hit_evals.copy_(torch.where(found, evals_at, self.first_hit_evals))
            self._update(self.first_hit_steps, index, start, n)
            self._hold(_last_above(gap, self.targets), evals, start, n)
        index = self._curve_index.get(self._chunk_start)
        if index is not None:
            rows, columns = index
            picked = torch.where(observed[rows], losses[rows], float("nan"))
            self.curve[:, columns] = picked.T
        self._chunk_start += n
        self._filled = 0

    def _hold(self, last_break: torch.Tensor, evals: torch.Tensor, start: int, n: int) -> None:
        """Move each hold past ``last_break``, the last step of this chunk that breaks it (its gap is
        above the target, or it is not observed), per run and target; -1 where none does."""
        assert self.held_steps is not None and self.held_evals is not None and self._hold_pending is not None
        # a hold that a break at the previous chunk's last step started here begins at this chunk's step 0
        first = evals[0][:, None].expand_as(self.held_evals)
        self.held_evals.copy_(torch.where(self._hold_pending, first, self.held_evals))
        broke = last_break >= 0
        resume = (last_break + 1).clamp(max=n - 1)
        self.held_steps.copy_(torch.where(broke, start + last_break + 1, self.held_steps))
        self.held_evals.copy_(torch.where(broke, evals.T.gather(1, resume), self.held_evals))
        self._hold_pending = broke & (last_break == n - 1)

    def held(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(held_steps, held_evals)``, -1 where the last step observed breaks the hold (the gap is
        above the target there, or the run diverged); None without targets (f* unknown)."""
        if self.held_steps is None or self.held_evals is None or self._hold_pending is None:
            return None
        broken = self._hold_pending
        return torch.where(broken, -1, self.held_steps), torch.where(broken, -1, self.held_evals)

    @staticmethod
    def _update(first_steps: torch.Tensor, index: torch.Tensor, start: int, n: int) -> None:
        """Set censored entries (-1) of ``first_steps`` to ``start + index`` where ``index < n``."""
        first_steps.copy_(torch.where((first_steps < 0) & (index < n), start + index, first_steps))
