"""Minibatches of a finite-sum landscape: each run's own draw, without replacement within an epoch.

Run ``s`` on instance ``i`` with ``n`` examples and batch size ``m`` visits the examples in epochs:
epoch ``e`` is a permutation ``pi_{i,s,e}`` of ``0 .. n-1`` and its ``floor(n / m)`` minibatches are
consecutive slices of ``m`` of it; the last ``n mod m`` examples of the permutation are left out of
that epoch (PyTorch's ``DataLoader(drop_last=True)``), so that every gradient is a mean over exactly
``m`` examples. A run draws one minibatch per optimizer step: step k uses minibatch ``k mod floor(n/m)`` of epoch
``k div floor(n/m)``, and every gradient evaluation within the step uses it (SAM's ascent and descent
gradients, LBFGS's line search), as training on a minibatch does.

The permutation is the order of counter-based hashes, ``h_j = H(keys_s, e, j)`` (:func:`lowbias32`
rounds keyed by ``numpy.random.SeedSequence(derive_seed(i, s, "minibatch"))``), sorted with the
index as a tie-break: exact integer operations only, so a run's minibatches are the same on every
device, whichever runs share its batch, and whatever its optimizer does between evaluations. All
runs' permutations of an epoch are one ``(B, n)`` sort on the device, and a minibatch is one slice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from landbench.rng import _MASK32, derive_seeds, lowbias32, seed_sequence_states


def run_keys(instance: int, seeds: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """The ``(B, 3)`` int64 hash keys of the runs' minibatch streams: the words of
    ``numpy.random.SeedSequence(derive_seed(instance, seed, "minibatch")).generate_state(3, uint32)``,
    computed for all runs at once (:func:`derive_seeds`, :func:`seed_sequence_states`)."""
    words = seed_sequence_states(derive_seeds((instance,), seeds, ("minibatch",)), 3)
    return torch.from_numpy(words.astype(np.int64)).to(torch.device(device))


def epoch_order(keys: torch.Tensor, epoch: int, n: int) -> torch.Tensor:
    """The permutations of ``0 .. n-1`` of epoch ``epoch`` for each run of ``keys``: ``(B, n)`` int64.

    ``h_j = lowbias32(lowbias32(lowbias32(j ^ k0) ^ lo(e) ^ k1) ^ hi(e) ^ k2)`` and the order sorts
    ``h_j 2**24 + j`` (n < 2**24) (distinct keys: the sort is unique on every device)."""
    index = torch.arange(n, dtype=torch.int64, device=keys.device).unsqueeze(0)
    k0, k1, k2 = (keys[:, i : i + 1] for i in range(3))
    low, high = epoch & _MASK32, (epoch >> 32) & _MASK32
    words = lowbias32(lowbias32(lowbias32(index ^ k0) ^ low ^ k1) ^ high ^ k2)
    return torch.argsort((words << 24) | index, dim=1)


class Minibatches:
    """The minibatch index streams of a group of runs (all runs of a batch, or one run in separate
    mode): :meth:`next` gives the ``(B, m)`` example indices of the runs' next gradient evaluation."""

    def __init__(self, instance: int, seeds: Sequence[int], n: int, m: int, device: torch.device | str) -> None:
        if not 1 <= m <= n:
            raise ValueError(f"a batch size must be 1..{n} (the examples), got {m}")
        self.n, self.m = n, m
        self.per_epoch = n // m
        self.keys = run_keys(instance, seeds, device)
        self.drawn = 0
        self.order: torch.Tensor | None = None

    def next(self) -> torch.Tensor:
        """The example indices of the runs' next minibatch (their next step), ``(B, m)``."""
        epoch, slot = divmod(self.drawn, self.per_epoch)
        if slot == 0 or self.order is None:
            self.order = epoch_order(self.keys, epoch, self.n)
        self.drawn += 1
        self.current = self.order[:, slot * self.m : (slot + 1) * self.m]
        return self.current

    def again(self) -> torch.Tensor:
        """The example indices of the current minibatch (the first one if none was drawn): what a
        closure's evaluations within a step use (SAM's ascent and descent, LBFGS's line search)."""
        return self.current if self.drawn else self.next()


def examples_seen(evals: int, batch_size: int) -> int:
    """Per-example gradients a run computed: ``evals * batch_size`` (SAM computes each twice)."""
    return int(evals) * int(batch_size)


def epochs_of(steps: int, batch_size: int, n: int) -> float:
    """Passes over the training set: ``steps * batch_size / n`` (one minibatch per step)."""
    return int(steps) * int(batch_size) / n
