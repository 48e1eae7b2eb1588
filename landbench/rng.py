"""Seeds and random streams that do not depend on how runs are batched, nor (for instances) on the device.

Two rules make results reproducible:

* A random *instance* (a rotated saddle's frame, a Gaussian field's frequencies) is a function of
  (family, instance seed, the parameters the draw depends on) alone: it is drawn on the CPU in
  float64 from a seeded :class:`torch.Generator` and only then cast and moved, so the CPU and the
  GPU see the same landscape. Spin-glass couplings are too many to draw on the CPU and move, and
  must be regenerated block by block when they do not fit: they come from :func:`counter_normal`,
  a counter-based generator whose values are bit-identical on every device and for any blocking.
* A *run* (start point, gradient noise) is a function of (instance seed, run seed) alone, never of
  which other runs share its batch. Start points come from one CPU generator per run; gradient
  noise from one device generator per run (:class:`RunNoise`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

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
    """How many gradient evaluations of noise a run draws at once: about 2**14 numbers a draw, 1 to 256.

    It depends on the dimension only, so a run's noise does not depend on the batch it is in; the
    buffer holds B * block_steps * dim numbers (64 KiB per run in float32 for dim <= 2**14).
    """
    return max(1, min(256, (1 << 14) // max(dim, 1)))


class RunNoise:
    """Standard normal gradient noise, one independent stream per run, one draw per gradient evaluation.

    Run i draws from its own :class:`torch.Generator` on the device, seeded with
    ``derive_seed(instance, seed_i, "noise")``, in blocks of :func:`block_steps` evaluations, so that a
    run's k-th gradient evaluation gets the same noise whichever runs share its batch (and whether
    its optimizer evaluates once per step, twice like SAM, or a varying number of times like LBFGS,
    as long as the run's own evaluations come in order), while the generator calls per evaluation
    stay at ``B / block_steps(dim)``. (CPU and CUDA generators are different algorithms: a run's
    noise on the GPU is a different, equally valid, draw than on the CPU; the instance is identical.)
    """

    def __init__(self, instance: int, seeds: Sequence[int], dim: int, dtype: torch.dtype, device: torch.device | str):
        device = torch.device(device)
        self.generators = [
            torch.Generator(device=device).manual_seed(derive_seed(instance, seed, "noise")) for seed in seeds
        ]
        self.block = block_steps(dim)
        self.buffer = torch.empty((len(seeds), self.block, dim), dtype=dtype, device=device)
        self.drawn = 0

    def next(self) -> torch.Tensor:
        """The ``(B, dim)`` noise of the next gradient evaluation (a view into a reused buffer)."""
        offset = self.drawn % self.block
        if offset == 0:
            for row, generator in zip(self.buffer, self.generators):
                torch.randn(row.shape, generator=generator, out=row)
        self.drawn += 1
        return self.buffer[:, offset]


# --- counter-based Gaussian numbers (identical on every device) -----------------------------------

_MASK32 = 0xFFFFFFFF
_TWO_PI = 2.0 * math.pi
_LN2 = math.log(2.0)
_SQRT_HALF = math.sqrt(0.5)
#: ln(m) = 2 s sum_k s^(2k)/(2k+1), s = (m-1)/(m+1), |s| <= 0.172 for m in [sqrt(1/2), sqrt(2)).
_LOG_SERIES = tuple(1.0 / (2 * k + 1) for k in range(12))
#: sin y = y sum_k (-1)^k y^(2k)/(2k+1)!, cos y = sum_k (-1)^k y^(2k)/(2k)!, |y| <= pi/4.
_SIN_SERIES = tuple((-1) ** k / math.factorial(2 * k + 1) for k in range(9))
_COS_SERIES = tuple((-1) ** k / math.factorial(2 * k) for k in range(10))
#: Pairs of numbers computed at once inside counter_normal (bounds its temporaries, not its values).
_CHUNK_PAIRS = 1 << 18


def _mul32(x: Any, constant: int) -> Any:
    """``x * constant mod 2**32`` for 32-bit ``x`` (an int or an int64 tensor, which is overwritten),
    exactly: the constant is split into 16-bit halves so that no intermediate exceeds 2**49."""
    high = x * (constant >> 16)
    high &= 0xFFFF
    high <<= 16
    x *= constant & 0xFFFF
    x += high
    x &= _MASK32
    return x


def lowbias32(x: Any) -> Any:
    """C. Wellons' ``lowbias32`` integer hash, a bijection of 32-bit values (an int or an int64 tensor):
    ``x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16`` (mod 2**32).

    Reference: C. Wellons, "Prospecting for hash functions" (2018), https://nullprogram.com/blog/2018/07/31/.
    """
    x = x ^ (x >> 16)  # a new tensor: the argument is left as it is
    x = _mul32(x, 0x7FEB352D)
    x ^= x >> 15
    x = _mul32(x, 0x846CA68B)
    x ^= x >> 16
    return x


def _polynomial(z: torch.Tensor, coefficients: Sequence[float]) -> torch.Tensor:
    """``sum_k c_k z^k`` by Horner's rule, one multiply and one add at a time (no fused operations,
    so every device rounds identically)."""
    total = torch.full_like(z, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        total = total.mul_(z).add_(c)
    return total


def _hash_lane(low: torch.Tensor, high: Any, keys: Sequence[int]) -> torch.Tensor:
    """32 random bits per 64-bit counter ``high * 2**32 + low``: three keyed lowbias32 rounds."""
    x = lowbias32(low ^ keys[0])
    x = lowbias32(x ^ lowbias32(high ^ keys[1]))
    return lowbias32(x ^ keys[2])


def _minus_two_log_uniform(bits: torch.Tensor) -> torch.Tensor:
    """``-2 ln u`` with ``u = (bits + 1/2) / 2**32`` in (0, 1), from exact operations only: ``frexp``
    splits ``2 bits + 1 = m 2^e`` exactly and ``ln m`` is a series in ``s = (m - 1)/(m + 1)``."""
    mantissa, exponent = torch.frexp((2 * bits + 1).to(torch.float64))
    small = mantissa < _SQRT_HALF
    mantissa = torch.where(small, mantissa * 2.0, mantissa)
    exponent = exponent.to(torch.float64) - small.to(torch.float64)
    s = (mantissa - 1.0) / (mantissa + 1.0)
    log_mantissa = _polynomial(s * s, _LOG_SERIES).mul_(s).mul_(2.0)
    return ((exponent - 33.0) * _LN2 + log_mantissa).mul_(-2.0)


def _cos_sin_turn(bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` of ``2 pi bits / 2**32``: the quadrant from the top bits (exact), then
    Taylor series on ``|y| <= pi/4``."""
    quadrant = (bits + (1 << 29)) >> 30
    y = (bits - (quadrant << 30)).to(torch.float64) * (_TWO_PI / 2.0**32)
    y2 = y * y
    sin_y = _polynomial(y2, _SIN_SERIES).mul_(y)
    cos_y = _polynomial(y2, _COS_SERIES)
    swap = (quadrant & 1).bool()
    cos_sign = (1 - 2 * (((quadrant + 1) >> 1) & 1)).to(torch.float64)
    sin_sign = (1 - 2 * ((quadrant >> 1) & 1)).to(torch.float64)
    return torch.where(swap, sin_y, cos_y) * cos_sign, torch.where(swap, cos_y, sin_y) * sin_sign


def _normal_pairs(keys: Sequence[int], first: int, count: int, device: torch.device) -> torch.Tensor:
    """The normals of pair counters ``first .. first + count - 1``, interleaved: ``(2 count,)``."""
    counters = torch.arange(first, first + count, dtype=torch.int64, device=device)
    low = counters & _MASK32
    last_high = (first + count - 1) >> 32
    high: Any = first >> 32 if first >> 32 == last_high else counters >> 32
    radius = _minus_two_log_uniform(_hash_lane(low, high, keys[:3])).sqrt_()
    cosine, sine = _cos_sin_turn(_hash_lane(low, high, keys[3:]))
    return torch.stack([radius * cosine, radius * sine], 1).reshape(-1)


def counter_normal(key: int, start: int, count: int, device: torch.device | str = "cpu") -> torch.Tensor:
    r"""Standard normal numbers ``z[start], ..., z[start + count - 1]`` of the stream ``key``, float64.

    ``z[n]`` is a fixed function of ``(key, n)`` (counter-based, like Philox; Salmon et al. 2011),
    computed from exact integer and IEEE operations only, so it is the same on every device, for
    any split of a range into calls, and for any chunking: ``counter_normal(k, a, n)`` equals
    ``counter_normal(k, a, m)`` followed by ``counter_normal(k, a + m, n - m)``, bit for bit.

    * Counter pair ``m = n // 2`` (any non-negative 64-bit integer, hashed as two 32-bit halves)
      gives two 32-bit words, each from three keyed rounds of :func:`lowbias32` (integer hashing in
      int64 tensors, every product below 2**49, so exact on every device). The six 32-bit round
      keys come from ``numpy.random.SeedSequence(key)``.
    * Box-Muller: ``u = (a + 1/2)/2**32``, ``theta = 2 pi b / 2**32``, ``r = sqrt(-2 ln u)``;
      ``z[2m] = r cos(theta)``, ``z[2m+1] = r sin(theta)`` (two independent normals). The
      logarithm, cosine and sine are series evaluated with single IEEE operations (no library
      ``log``/``cos``, whose last bit differs between CPU and CUDA), accurate to about 1e-16
      relative. ``|z| <= 6.7``: the tails beyond ``sqrt(2 * 33 ln 2)`` (probability 3e-11) are cut.

    Cost: about 200 elementwise tensor operations per pair, in chunks of 2**18 pairs: about 40-60 ns per
    number on a 2-core CPU.

    References: G. E. P. Box and M. E. Muller, "A note on the generation of random normal deviates",
    Ann. Math. Statist. 29 (1958); J. K. Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
    SC 2011; C. Wellons, "Prospecting for hash functions" (2018).
    """
    if key < 0 or start < 0 or count < 0:
        raise ValueError(f"key, start and count must be non-negative, got {key}, {start}, {count}")
    device = torch.device(device)
    keys = [int(k) for k in np.random.SeedSequence(key).generate_state(6, dtype=np.uint32)]
    first, last = start // 2, (start + count + 1) // 2
    out = torch.empty(2 * (last - first), dtype=torch.float64, device=device)
    for chunk in range(first, last, _CHUNK_PAIRS):
        size = min(_CHUNK_PAIRS, last - chunk)
        out[2 * (chunk - first) : 2 * (chunk - first + size)] = _normal_pairs(keys, chunk, size, device)
    offset = start - 2 * first
    return out[offset : offset + count]
