"""First-passage and holding events of B runs, from the loss history, on the device (on a GPU with no host sync).

At every step t the engine hands over the noise-free loss ``f(x_t)`` of each run. The tracker
writes it into a ``(chunk, B)`` buffer (one device copy per step) and, every ``chunk`` steps,
extracts the events of those steps in a few vectorised operations; on the CPU, where reading a
value costs nothing, it first looks at the chunk to skip what cannot change an event (the masks
of a chunk with every loss finite, the searches of runs with no level within reach). Per run it
keeps:

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
import struct
from collections.abc import Callable, Sequence

import numpy as np
import torch


def curve_steps(steps: int, points: int) -> list[int]:
    """Log-spaced steps in [0, steps]: 0, 1, then about ``points`` values up to ``steps`` inclusive."""
    grid = np.unique(np.round(np.logspace(0, np.log10(max(steps, 1)), max(points - 1, 1))).astype(int))
    return sorted({0, steps, *(int(s) for s in grid if s <= steps)})


# per dtype: how its bits and its values are packed (struct), and the bits of +inf
_LAYOUTS = {
    torch.float64: ("<Q", "<d", 0x7FF0000000000000),
    torch.float32: ("<I", "<f", 0x7F800000),
    torch.float16: ("<H", "<e", 0x7C00),
    torch.bfloat16: ("<I", "<f", 0x7F80),  # the upper half of a float32
}


def _bound(holds: Callable[[float], bool], dtype: torch.dtype, near: float = math.nan) -> float:
    """The largest value v of ``dtype`` (inf included; -inf if none) with ``holds(v)``, for a
    ``holds`` that is true exactly on the values up to some point: for every finite x of the dtype,
    ``x <= v`` is then ``holds(x)``, so the searches of a flush can compare the losses themselves.
    Found by walking the dtype's values in order from ``near``, a value of the dtype near v (the
    level rounded to the dtype: a step or two), and by bisecting on them where that walk does not
    end within a few steps (about 64 evaluations of ``holds``); ``near`` only saves time."""
    bits_format, value_format, infinity = _LAYOUTS[dtype]
    shift = 16 if dtype == torch.bfloat16 else 0
    sign = 1 << (8 * struct.calcsize(bits_format) - shift - 1)

    def value(key: int) -> float:  # the dtype's value at ``key`` in the order of the values
        raw = key if key >= 0 else -key | sign
        return struct.unpack(value_format, struct.pack(bits_format, raw << shift))[0]

    def key(number: float) -> int:  # the inverse of ``value`` on the dtype's values
        raw = struct.unpack(bits_format, struct.pack(value_format, number))[0] >> shift
        return -(raw & ~sign) if raw & sign else raw

    low, high = -infinity, infinity  # holds(value(low)) and not holds(value(high)), from here on
    if not holds(value(low)):
        return -math.inf
    if holds(value(high)):
        return math.inf
    if not math.isnan(near):
        try:
            probe = min(max(key(near), low), high)
        except OverflowError:  # not a value of the dtype after all (too large for it): bisect only
            probe = low
        for _ in range(8):
            if high - low <= 1:
                break
            if holds(value(probe)):
                low, probe = probe, probe + 1
            else:
                high, probe = probe, probe - 1
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if holds(value(middle)) else (low, middle)
    return value(low)


def _columns(values: torch.Tensor, need: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``values`` ``(n, B)`` on the columns where ``need`` holds, and those columns: all of them
    (None for the columns) if ``need`` is None or holds everywhere, (None, None) if it holds nowhere."""
    if need is None:
        return values, None
    runs = need.nonzero()[:, 0]
    if len(runs) == len(need):
        return values, None
    return (values[:, runs], runs) if len(runs) else (None, None)


def _spread(part: torch.Tensor, runs: torch.Tensor | None, batch: int, fill: int) -> torch.Tensor:
    """``part`` ``(len(runs), K)`` on the rows ``runs`` of a ``(batch, K)`` tensor of ``fill``."""
    if runs is None:
        return part
    out = part.new_full((batch, part.shape[1]), fill)
    out[runs] = part
    return out


def _first_at_most(rising: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """``(B, K)``: per row b of ``rising`` ``(B, n)``, minus the running minimum of a run's values
    (non-decreasing along the row), and bound k, the first column t with a running minimum at most
    ``bounds[k]``, else n: one sorted search per bound (no ``(B, n, K)`` tensor)."""
    return torch.searchsorted(rising, bounds.neg().expand(rising.shape[0], -1).contiguous())


def _last_above(backward_max: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """``(B, K)``: per row b and bound k, the last step t of a chunk of n with a value above
    ``bounds[k]``, else -1, given ``backward_max`` ``(B, n)``, whose column j is the maximum over the
    chunk's last j + 1 steps (non-decreasing along the row): it is above a bound exactly from the
    column that reaches back to that step."""
    n = backward_max.shape[1]
    reach = torch.searchsorted(backward_max, bounds.expand(backward_max.shape[0], -1).contiguous(), right=True)
    return n - 1 - reach


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
        # Whether a flush reads the chunk on the host to do less: skip the masks when every run is
        # alive and every loss finite, search only the runs where a search can change something.
        # Only on the CPU, where that costs nothing (on a GPU it would wait for the device); the
        # tests set it to run both ways.
        self._host_decides = device.type == "cpu"
        self.diverged_step = full((batch,), -1, torch.int64)
        self.last_loss = full((batch,), float("nan"), dtype)
        self.escape_thresholds = torch.tensor(list(escape_thresholds), dtype=torch.float64, device=device)
        self.escape_steps = full((batch, len(escape_thresholds)), -1, torch.int64) if escape_thresholds else None
        self.f_star = f_star
        self.targets = torch.tensor(list(targets), dtype=torch.float64, device=device)
        # A loss f meets an escape threshold h when float64(f) <= h, and a target e when its gap
        # float64(f) - f* (rounded) <= e: both are monotone in f, so each is f <= a bound in the
        # losses' dtype, found once here; a flush then neither converts nor subtracts.
        # (Levels as Python floats: a numpy float32 f* would otherwise be compared in float32.)
        thresholds = [float(h) for h in escape_thresholds]
        star = math.nan if f_star is None else float(f_star)
        levels = [float(e) for e in targets] if f_star is not None else []
        near = torch.tensor(thresholds + [star + e for e in levels], dtype=torch.float64).to(dtype).tolist()
        self._escape_bounds = torch.tensor(
            [_bound(lambda f, h=h: f <= h, dtype, g) for h, g in zip(thresholds, near)], dtype=dtype, device=device
        )
        self._target_bounds = torch.tensor(
            [_bound(lambda f, e=e: f - star <= e, dtype, g) for e, g in zip(levels, near[len(thresholds) :])],
            dtype=dtype,
            device=device,
        )
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
        self.evals = evals[n - 1].clone()
        host = self._host_decides
        observed: torch.Tensor | None = None  # None: every step of every run is observed
        if host and self._all_observed(losses):
            self.last_loss = losses[n - 1].clone()
            kept = losses
        else:
            observed = self._observe(losses, start)
            kept = torch.where(observed, losses, math.inf)  # an unobserved step is never within a bound
        if self.escape_steps is not None or self.first_hit_steps is not None:
            # On the host, the runs where a search can change something (None: all of them).
            need = None
            if host:
                low = kept.amin(0)
                need = torch.zeros_like(self.alive)
                if self.escape_steps is not None and start + n > 1:
                    later = low if start > 0 else kept[1:].amin(0)
                    need |= ((self.escape_steps < 0) & (later[:, None] <= self._escape_bounds)).any(1)
                if self.first_hit_steps is not None:
                    need |= ((self.first_hit_steps < 0) & (low[:, None] <= self._target_bounds)).any(1)
            self._first_steps(kept, need, evals, start)
        if self.first_hit_steps is not None:
            self._holds(kept, host, evals, start)
        index = self._curve_index.get(start)
        if index is not None:
            rows, columns = index
            picked = losses[rows] if observed is None else torch.where(observed[rows], losses[rows], math.nan)
            self.curve[:, columns] = picked.T
        self._chunk_start += n
        self._filled = 0

    def _all_observed(self, losses: torch.Tensor) -> bool:
        """Whether every run is alive and every loss of the chunk finite, read on the host. A sum is
        finite only if every term is (an inf or a NaN stays non-finite through any sum; a sum of
        finite values that overflows only sends the chunk down the general path), so one reduction
        decides it, and the chunk's observed steps are then all of them: the same events as the
        masked path, without the masks."""
        return bool(self.alive.all()) and bool(torch.isfinite(losses.sum(0)).all())

    def _first_steps(self, kept: torch.Tensor, need: torch.Tensor | None, evals: torch.Tensor, start: int) -> None:
        """Escapes and first hits of the chunk, from ``kept`` (``(n, B)``, inf where not observed),
        searched on the runs where ``need`` (all if None); the others keep theirs."""
        n, batch = kept.shape
        part, runs = _columns(kept, need)
        if part is None:
            return
        # The first step at most a bound is where minus the running minimum first reaches minus the
        # bound. Escaping counts from step 1 on, so the first chunk takes the running minimum of its
        # steps 1.. for it, and folds step 0 in for the targets.
        falling = part.neg()
        escape_index = None
        if start == 0 and n > 1:
            later = falling[1:].T.cummax(1).values
            if self.escape_steps is not None:
                escape_index = _first_at_most(later, self._escape_bounds) + 1
            rising = torch.empty((later.shape[0], n), dtype=later.dtype, device=later.device)
            rising[:, 0] = falling[0]
            torch.maximum(later, falling[0][:, None], out=rising[:, 1:])
        else:
            rising = falling.T.cummax(1).values
            if self.escape_steps is not None and start > 0:
                escape_index = _first_at_most(rising, self._escape_bounds)
        if self.escape_steps is not None and escape_index is not None:
            self._update(self.escape_steps, _spread(escape_index, runs, batch, n), start, n)
        if self.first_hit_steps is not None and self.first_hit_evals is not None:
            index = _spread(_first_at_most(rising, self._target_bounds), runs, batch, n)
            found = (self.first_hit_steps < 0) & (index < n)
            evals_at = evals.T.gather(1, index.clamp(max=n - 1))
            self.first_hit_evals.copy_(torch.where(found, evals_at, self.first_hit_evals))
            self._update(self.first_hit_steps, index, start, n)

    def _holds(self, kept: torch.Tensor, host: bool, evals: torch.Tensor, start: int) -> None:
        """Move the holds past the chunk's last break. On the host, the last break is the chunk's
        last step where that step is above the bound, none where no step is, and searched only on
        the runs with another case."""
        n, batch = kept.shape
        bounds = self._target_bounds
        last_break = None
        need = None
        if host:
            above = kept[n - 1][:, None] > bounds
            last_break = torch.where(above, n - 1, -1)
            need = (~above & (kept.amax(0)[:, None] > bounds)).any(1)
        part, runs = _columns(kept, need)
        if part is not None:
            # column j: the maximum over the chunk's last j + 1 steps
            searched = _last_above(part.flip(0).T.cummax(1).values, bounds)
            if last_break is None or runs is None:
                last_break = searched
            else:
                last_break[runs] = searched
        assert last_break is not None
        self._hold(last_break, evals, start, n)

    def _observe(self, losses: torch.Tensor, start: int) -> torch.Tensor:
        """``(n, B)``: which steps of the chunk are observed (a run is up to, not including, its first
        non-finite loss); updates ``diverged_step``, ``last_loss`` and ``alive``."""
        n = losses.shape[0]
        finite = losses.abs() < math.inf  # torch.isfinite, in fewer passes: NaN and inf compare False
        first_bad = torch.where(finite.all(0), n, finite.to(torch.uint8).argmin(0))  # argmin: the first 0
        count = torch.where(self.alive, first_bad, 0)
        newly_diverged = self.alive & (count < n)
        self.diverged_step = torch.where(newly_diverged, start + count, self.diverged_step)
        last = losses.gather(0, (count - 1).clamp(min=0)[None])[0]
        self.last_loss = torch.where(count > 0, last, self.last_loss)
        self.alive = self.alive & ~newly_diverged
        return torch.arange(n, device=losses.device)[:, None] < count

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
