"""Seeds and random streams that do not depend on how runs are batched.

Two rules make results reproducible:

* A random *instance* (a rotated saddle, later a Gaussian field or a spin glass) is a function of
  (spec, instance seed) alone: it is drawn on the CPU in float64 from a seeded
  :class:`torch.Generator` and only then cast and moved, so the CPU and the GPU see the same
  landscape.
* A *run* (start point, gradient noise) is a function of (instance seed, run seed) alone, never of
  which other runs share its batch. Start points come from one CPU generator per run; gradient
  noise from one device generator per run (:class:`RunNoise`).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from integers and strings, stable across platforms and versions.

    Uses :class:`numpy.random.SeedSequence`, whose output is a documented, fixed function of its
    entropy; strings enter through CRC-32.
    """
    entropy = [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]
    if any(e < 0 for e in entropy):
        raise ValueError(f"seeds must be non-negative integers, got {parts!r}")
    words = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def cpu_generator(*parts: int | str) -> torch.Generator:
    """A CPU :class:`torch.Generator` seeded with :func:`derive_seed` of ``parts``."""
    return torch.Generator(device="cpu").manual_seed(derive_seed(*parts))


def block_steps(dim: int) -> int:
    """How many steps of noise a run draws at once: about 2**14 numbers a draw, 1 to 256 steps.

    It depends on the dimension only, so a run's noise does not depend on the batch it is in; the
    buffer holds B * block_steps * dim numbers (64 KiB per run in float32 for dim <= 2**14).
    """
    return max(1, min(256, (1 << 14) // max(dim, 1)))


class RunNoise:
    """Standard normal gradient noise, one independent stream per run.

    Run i draws from its own :class:`torch.Generator` on the device, seeded with
    ``derive_seed(instance, seed_i, "noise")``, in blocks of :func:`block_steps` steps, so that a run's
    noise is the same whichever runs share its batch, while the generator calls per step stay at
    ``B / block_steps(dim)``. (CPU and CUDA generators are different algorithms: a run's noise on
    the GPU is a different, equally valid, draw than on the CPU; the landscape instance is identical.)
    Steps must be requested in order 0, 1, 2, ...
    """

    def __init__(self, instance: int, seeds: Sequence[int], dim: int, dtype: torch.dtype, device: torch.device | str):
        device = torch.device(device)
        self.generators = [
            torch.Generator(device=device).manual_seed(derive_seed(instance, seed, "noise")) for seed in seeds
        ]
        self.block = block_steps(dim)
        self.buffer = torch.empty((len(seeds), self.block, dim), dtype=dtype, device=device)

    def sample(self, step: int) -> torch.Tensor:
        """The ``(B, dim)`` noise of the given step (a view into a reused buffer)."""
        offset = step % self.block
        if offset == 0:
            for row, generator in zip(self.buffer, self.generators):
                torch.randn(row.shape, generator=generator, out=row)
        return self.buffer[:, offset]
