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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from integers and strings, stable across platforms and versions: the reference
    definition of every seed a run derives.

    Uses :class:`numpy.random.SeedSequence`, whose output is a documented, fixed function of its
    entropy; strings enter through CRC-32. The seed is ``(w0 << 31) ^ w1`` with ``w0, w1`` the
    first two words of ``SeedSequence(parts).generate_state(2, uint32)``. :func:`derive_seeds`
    computes it for a whole batch of seeds at once, with the same values.
    """
    entropy = [_entropy_int(p) for p in parts]
    if any(e < 0 for e in entropy):
        raise ValueError(f"seeds must be non-negative integers, got {parts!r}")
    words = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def cpu_generator(*parts: int | str) -> torch.Generator:
    """A CPU :class:`torch.Generator` seeded with :func:`derive_seed` of ``parts``."""
    return torch.Generator(device="cpu").manual_seed(derive_seed(*parts))


# --- numpy's SeedSequence, vectorised over a batch of entropies ----------------------------------
#
# numpy.random.SeedSequence (numpy/random/bit_generator.pyx, after M. E. O'Neill's seed_seq_fe) with
# its default pool of 4 words: the entropy is coerced to 32-bit words (an integer n >= 0 becomes
# its base-2**32 digits, lowest first, at least one), then
#   mix_entropy: pool[i] = hashmix(entropy[i] or 0), i < 4; pool[dst] = mix(pool[dst], hashmix(pool[src]))
#                for every src != dst; then every further entropy word is mixed into every pool word;
#   generate_state(n): word i = hash of pool[i % 4] with a second multiplier sequence.
# hashmix's multiplier evolves by a fixed recurrence, independent of the data, so the same sequence
# of uint32 operations serves every row of the same entropy length: one numpy operation per step
# over all rows. Entropy shorter than the pool is the same as entropy padded with zero words.

_POOL = 4
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R = 0xCA01F9DD, 0x4973F715
_XSHIFT = 16


def _entropy_int(part: Any) -> int:
    """One part of a seed as derive_seed reads it: a string by its CRC-32, anything else by ``int``."""
    return zlib.crc32(part.encode()) if isinstance(part, str) else int(part)


def _words(value: int) -> list[int]:
    """numpy's coercion of a non-negative integer: its base-2**32 digits, lowest first (``[0]`` for 0)."""
    words = [value & _MASK32]
    value >>= 32
    while value:
        words.append(value & _MASK32)
        value >>= 32
    return words


def _seed_sequence_rows(entropy: np.ndarray, n_words: int) -> np.ndarray:
    """``SeedSequence(row).generate_state(n_words, uint32)`` for every column ``row`` of ``entropy``
    (``(L, N)`` uint32, words already coerced; rows shorter than the pool padded with zeros):
    ``(n_words, N)`` uint32."""
    length, count = entropy.shape
    if length < _POOL:
        entropy = np.concatenate([entropy, np.zeros((_POOL - length, count), dtype=np.uint32)])
        length = _POOL
    const = _INIT_A

    def hashmix(value: np.ndarray) -> np.ndarray:
        nonlocal const
        out = value ^ np.uint32(const)
        const = (const * _MULT_A) & _MASK32
        out *= np.uint32(const)
        out ^= out >> np.uint32(_XSHIFT)
        return out

    def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x *= np.uint32(_MIX_MULT_L)
        y *= np.uint32(_MIX_MULT_R)
        x -= y
        x ^= x >> np.uint32(_XSHIFT)
        return x

    with np.errstate(over="ignore"):
        pool = [hashmix(entropy[i]) for i in range(_POOL)]
        for src in range(_POOL):
            for dst in range(_POOL):
                if src != dst:
                    pool[dst] = mix(pool[dst], hashmix(pool[src]))
        for src in range(_POOL, length):
            for dst in range(_POOL):
                pool[dst] = mix(pool[dst], hashmix(entropy[src]))
        out = np.empty((n_words, count), dtype=np.uint32)
        const = _INIT_B
        for i in range(n_words):
            word = pool[i % _POOL] ^ np.uint32(const)
            const = (const * _MULT_B) & _MASK32
            word *= np.uint32(const)
            word ^= word >> np.uint32(_XSHIFT)
            out[i] = word
    return out


def _digit_columns(values: Sequence[int], digits: int) -> np.ndarray:
    """The base-2**32 digits of non-negative integers, ``(digits, N)`` uint32, lowest first."""
    if digits == 1:
        return np.array(values, dtype=np.uint32)[None]
    if digits == 2:
        wide = np.array(values, dtype=np.uint64)
        return np.stack([wide & np.uint64(_MASK32), wide >> np.uint64(32)]).astype(np.uint32)
    return np.array([[(v >> (32 * j)) & _MASK32 for v in values] for j in range(digits)], dtype=np.uint32)


def _digit_count(value: int) -> int:
    return max(1, (value.bit_length() + 31) // 32)


def _hash_batch(head: list[int], values: list[int], tail: list[int], n_words: int) -> np.ndarray:
    """``SeedSequence(head + words(v) + tail).generate_state(n_words, uint32)`` for every non-negative
    ``v`` of ``values`` (``head`` and ``tail``: 32-bit words), ``(len(values), n_words)`` uint32.
    Values of the same number of 32-bit digits share one pass of :func:`_seed_sequence_rows`."""
    groups: dict[int, list[int]] = {}
    if max(values) <= _MASK32:
        groups[1] = list(range(len(values)))
    else:
        for row, value in enumerate(values):
            groups.setdefault(_digit_count(value), []).append(row)
    out = np.empty((len(values), n_words), dtype=np.uint32)
    for digits, rows in groups.items():
        group = values if len(groups) == 1 else [values[r] for r in rows]
        entropy = np.empty((len(head) + digits + len(tail), len(rows)), dtype=np.uint32)
        entropy[: len(head)] = np.array(head, dtype=np.uint32)[:, None]
        entropy[len(head) : len(head) + digits] = _digit_columns(group, digits)
        entropy[len(head) + digits :] = np.array(tail, dtype=np.uint32)[:, None]
        out[rows] = _seed_sequence_rows(entropy, n_words).T
    return out


def seed_sequence_states(entropies: Sequence[int], n_words: int) -> np.ndarray:
    """``numpy.random.SeedSequence(e).generate_state(n_words, np.uint32)`` for every non-negative
    integer ``e`` of ``entropies``, at once: ``(len(entropies), n_words)`` uint32, bit-identical."""
    values = [int(e) for e in entropies]
    if not values:
        return np.empty((0, n_words), dtype=np.uint32)
    if min(values) < 0:
        raise ValueError("expected non-negative integer")
    return _hash_batch([], values, [], n_words)


def derive_seeds(
    prefix: Sequence[int | str], seeds: Sequence[int | str], suffix: Sequence[int | str] = ()
) -> list[int]:
    """``[derive_seed(*prefix, s, *suffix) for s in seeds]``, bit for bit, in one vectorised pass of
    numpy's SeedSequence hashing (:func:`_seed_sequence_rows`): under 1 us a seed for a few hundred
    seeds instead of 7-9 us. Raises as that loop does, naming the parts of the first row with a
    negative part. Seeds of different word counts (``>= 2**32``) are hashed in separate groups."""
    head = [_entropy_int(p) for p in prefix]
    tail = [_entropy_int(p) for p in suffix]
    seeds = list(seeds)
    values = [_entropy_int(s) for s in seeds]
    if not values:
        return []
    if min(head + tail, default=0) < 0 or min(values) < 0:
        first = 0 if min(head + tail, default=0) < 0 else next(i for i, v in enumerate(values) if v < 0)
        parts = (*prefix, seeds[first], *suffix)
        raise ValueError(f"seeds must be non-negative integers, got {parts!r}")
    head_words = [w for v in head for w in _words(v)]
    tail_words = [w for v in tail for w in _words(v)]
    words = _hash_batch(head_words, values, tail_words, 2).astype(np.uint64)
    return ((words[:, 0] << np.uint64(31)) ^ words[:, 1]).tolist()


def generators(
    prefix: Sequence[int | str],
    seeds: Sequence[int | str],
    suffix: Sequence[int | str] = (),
    device: torch.device | str = "cpu",
) -> list[torch.Generator]:
    """One generator on ``device`` per seed, seeded with ``derive_seed(*prefix, s, *suffix)``
    (:func:`derive_seeds`: all of them in one pass)."""
    return [torch.Generator(device=device).manual_seed(seed) for seed in derive_seeds(prefix, seeds, suffix)]


def global_generators(device: torch.device | str = "cpu") -> list[torch.Generator]:
    """torch's global generators that code running on ``device`` draws from: the CPU's, and the CUDA
    device's for a CUDA device."""
    device = torch.device(device)
    if device.type != "cuda":
        return [torch.default_generator]
    index = device.index if device.index is not None else torch.cuda.current_device()
    return [torch.default_generator, torch.cuda.default_generators[index]]


def global_states(device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """The states of torch's global generators (:func:`global_generators`) now."""
    return [generator.get_state() for generator in global_generators(device)]


def drew_since(states: list[torch.Tensor], device: torch.device | str = "cpu") -> bool:
    """Whether anything drew from torch's global generators since they had ``states``."""
    return any(not torch.equal(state, now) for state, now in zip(states, global_states(device)))


@contextmanager
def global_state_kept(device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block, then give torch's global generators (:func:`global_generators`) the states
    they had before it: what landbench builds and steps to check or probe an optimizer, and the
    runs themselves, never move the stream a user's own code draws from."""
    saved = global_states(device)
    try:
        yield
    finally:
        for generator, state in zip(global_generators(device), saved):
            generator.set_state(state)


class GlobalStreams:
    """Each run's own state of torch's global generators (the CPU's, and the CUDA device's where the
    runs are), seeded with ``derive_seed(instance, seed_i, "global")``.

    An optimizer that draws from torch's global RNG (``torch.randn_like(p)``, ``p.normal_()``: e.g.
    pytorch-optimizer's Gravity seeds its state so) cannot step a batch as one tensor without its
    draws depending on the batch, so the mode probe gives it one optimizer per run (``separate``).
    There, each run's optimizer is built and stepped between :meth:`enter` and :meth:`leave` of its
    run: it draws from its run's stream, so its numbers depend neither on the other runs of the batch
    nor on what the process drew before, and the same seeds give the same records in any process
    (the engine gives the process its own state back afterwards: :func:`global_state_kept`)."""

    def __init__(self, instance: int, seeds: Sequence[int], device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.globals = global_generators(self.device)
        self.states = [
            [torch.Generator(device=g.device).manual_seed(seed).get_state() for g in self.globals]
            for seed in derive_seeds((instance,), seeds, ("global",))
        ]

    def enter(self, run: int) -> None:
        """Put run ``run``'s states into torch's global generators."""
        for generator, state in zip(self.globals, self.states[run]):
            generator.set_state(state)

    def leave(self, run: int) -> None:
        """Keep what run ``run`` left in torch's global generators as its state."""
        self.states[run] = [generator.get_state() for generator in self.globals]


def block_steps(dim: int) -> int:
    """How many gradient evaluations of noise a run draws at once: about 2**14 numbers a draw, 1 to 256.

    It depends on the dimension only, so a run's noise does not depend on the batch it is in; the
    buffer holds B * block_steps * dim numbers (64 KiB per run in float32 for dim <= 2**14).
    """
    return max(1, min(256, (1 << 14) // max(dim, 1)))


class RunNoise:
    """Gradient noise of the scenario's noise model (:mod:`landbench.noise`), one independent stream
    per run, one draw per gradient evaluation.

    Run i draws from its own :class:`torch.Generator` on the device, seeded with
    ``derive_seed(instance, seed_i, "noise")``, in blocks of :func:`block_steps` evaluations, so that a
    run's k-th gradient evaluation gets the same noise whichever runs share its batch (and whether
    its optimizer evaluates once per step, twice like SAM, or a varying number of times like LBFGS,
    as long as the run's own evaluations come in order), while the generator calls per evaluation
    stay at ``B / block_steps(dim)``. (CPU and CUDA generators are different algorithms: a run's
    noise on the GPU is a different, equally valid, draw than on the CPU; the instance is identical.)

    ``gaussian`` (the default) draws ``torch.randn`` straight into the buffer, as before noise models
    existed; so does ``hessian``, whose draws the evaluator then multiplies by ``(|H| / scale)^(1/2)``.
    ``student_t`` and ``alpha_stable`` draw their normal, gamma, uniform and exponential numbers from
    the same generator in float64 and store the result in the run's dtype. ``frozen``
    draws nothing: :meth:`next` needs the points and returns :func:`frozen_normal` of them.
    """

    def __init__(
        self,
        instance: int,
        seeds: Sequence[int],
        dim: int,
        dtype: torch.dtype,
        device: torch.device | str,
        model: Any = None,
    ):
        from landbench.noise import parse_noise_model

        device = torch.device(device)
        self.model = parse_noise_model("gaussian" if model is None else model)
        self.drawn = 0
        if self.model.name == "frozen":
            self.keys = frozen_keys(instance, seeds, device)
            self.dtype = dtype
            self.generators: list[torch.Generator] = []
            return
        self.generators = generators((instance,), seeds, ("noise",), device)
        self.block = block_steps(dim)
        self.buffer = torch.empty((len(seeds), self.block, dim), dtype=dtype, device=device)

    def next(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """The ``(B, dim)`` noise of the next gradient evaluation (a view into a reused buffer); for
        ``frozen``, the noise at the rows of ``x`` (``(k B, dim)``: k blocks of the same runs)."""
        if self.model.name == "frozen":
            if x is None:
                raise ValueError("frozen noise is a function of the point: give next(x)")
            self.drawn += 1
            keys = self.keys if len(x) == len(self.keys) else self.keys.repeat(len(x) // len(self.keys), 1)
            return frozen_normal(x, keys, float(self.model.value)).to(self.dtype)  # type: ignore[arg-type]
        offset = self.drawn % self.block
        if offset == 0:
            for row, generator in zip(self.buffer, self.generators):
                self._fill(row, generator)
        self.drawn += 1
        return self.buffer[:, offset]

    def _fill(self, row: torch.Tensor, generator: torch.Generator) -> None:
        """One run's next block of draws, in place."""
        name, value = self.model.name, self.model.value
        if name in ("gaussian", "hessian"):  # hessian: the engine shapes these (landbench.noise.hessian_noise)
            torch.randn(row.shape, generator=generator, out=row)
            return
        like = {"dtype": torch.float64, "device": row.device}
        if name == "student_t":
            z = torch.randn(row.shape, generator=generator, **like)
            shape = torch.full(row.shape, 0.5 * value, **like)  # type: ignore[operator]
            gamma = torch._standard_gamma(shape, generator=generator)
            draw = z.mul_(gamma.mul_(2.0 / value).rsqrt_())  # type: ignore[operator]
        else:  # alpha_stable
            draw = stable_symmetric(float(value), row.shape, generator, row.device)  # type: ignore[arg-type]
        row.copy_(draw.mul_(self.model.unit_scale))


def stable_symmetric(
    alpha: float, shape: Sequence[int], generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Standard symmetric alpha-stable numbers (characteristic function ``exp(-|t|^alpha)``), float64,
    by the Chambers-Mallows-Stuck method: ``U ~ U(-pi/2, pi/2)``, ``W ~ Exp(1)``,
    ``X = sin(alpha U) / cos(U)^(1/alpha) * (cos((1 - alpha) U) / W)^((1 - alpha)/alpha)``, which is
    ``tan U`` (Cauchy) at ``alpha = 1`` and ``2 sin(U) sqrt(W)``, normal of variance 2, at ``alpha = 2``.

    Reference: J. M. Chambers, C. L. Mallows and B. W. Stuck, "A method for simulating stable random
    variables", J. Amer. Statist. Assoc. 71 (1976); R. Weron, "On the Chambers-Mallows-Stuck method
    for simulating skewed stable random variables", Statist. Probab. Lett. 28 (1996).
    """
    like = {"dtype": torch.float64, "device": torch.device(device)}
    u = torch.rand(tuple(shape), generator=generator, **like).sub_(0.5).mul_(math.pi)
    w = torch.empty(tuple(shape), **like).exponential_(generator=generator)
    if alpha == 1.0:
        return torch.tan(u)
    first = torch.sin(alpha * u) / torch.cos(u).pow(1.0 / alpha)
    return first * (torch.cos((1.0 - alpha) * u) / w).pow((1.0 - alpha) / alpha)


def frozen_keys(instance: int, seeds: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """The ``(B, 3)`` int64 hash keys of the runs' frozen noise: 32-bit words of
    ``numpy.random.SeedSequence(derive_seed(instance, seed, "frozen")).generate_state(3, uint32)``
    (computed for all runs at once by :func:`derive_seeds` and :func:`seed_sequence_states`)."""
    words = seed_sequence_states(derive_seeds((instance,), seeds, ("frozen",)), 3)
    return torch.from_numpy(words.astype(np.int64)).to(torch.device(device))


#: Cell indices are clamped to +-2**62 (a point that far out in cells is one cell).
_CELL_LIMIT = float(2**62)


def frozen_normal(x: torch.Tensor, keys: torch.Tensor, cell: float) -> torch.Tensor:
    """Standard normal noise that is a fixed function of the point: row ``i`` of ``x`` gets a vector
    drawn from a hash of ``keys[i]`` and the cell ``q = floor(x_i / cell)`` (all coordinates), float64.

    Per coordinate ``j``: ``c_j = h(j ^ k0)``, ``e_j = h(h(lo(q_j) ^ c_j) ^ hi(q_j))`` with ``h`` =
    :func:`lowbias32` and ``lo``, ``hi`` the 32-bit halves of ``q_j``; the cell's word is
    ``s = sum_j e_j mod 2**32`` (exact integer sums: any order, any device); then
    ``a_j = h(h(s ^ k1) ^ c_j)``, ``b_j = h(h(s ^ k2) ^ c_j)`` and ``z_j = sqrt(-2 ln u(a_j)) cos(2 pi b_j / 2**32)``
    (Box-Muller with the exact series of :func:`counter_normal`). Points in the same cell get the same
    vector; points in different cells independent ones (up to 32-bit hash collisions). Non-finite
    coordinates count as 0."""
    q = torch.floor(torch.nan_to_num(x.double(), nan=0.0, posinf=0.0, neginf=0.0) / cell)
    q = q.clamp_(-_CELL_LIMIT, _CELL_LIMIT).to(torch.int64)
    k0, k1, k2 = (keys[:, i : i + 1] for i in range(3))
    index = torch.arange(x.shape[-1], dtype=torch.int64, device=x.device).unsqueeze(0)
    coordinate = lowbias32(index ^ k0)
    entry = lowbias32(lowbias32((q & _MASK32) ^ coordinate) ^ ((q >> 32) & _MASK32))
    word = entry.sum(dim=1, keepdim=True) & _MASK32
    a = lowbias32(lowbias32(word ^ k1) ^ coordinate)
    b = lowbias32(lowbias32(word ^ k2) ^ coordinate)
    return _minus_two_log_uniform(a).sqrt_() * _cos_sin_turn(b)[0]


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
