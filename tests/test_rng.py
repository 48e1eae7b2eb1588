"""Per-run seeds derived for a whole batch at once (landbench.rng.derive_seeds, generators,
seed_sequence_states): bit for bit numpy's SeedSequence on random and edge inputs (integers that
take one, two or more 32-bit words, strings, 1 to 5 parts), and the start points, noise streams,
frozen-noise keys, minibatch keys and perturbation generators equal to their per-seed definitions."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import landbench
from landbench.minibatch import Minibatches, run_keys
from landbench.optimizers.perturbed import PerturbedGD
from landbench.rng import (
    RunNoise,
    block_steps,
    cpu_generator,
    derive_seed,
    derive_seeds,
    frozen_keys,
    generators,
    seed_sequence_states,
)

EDGES = [0, 1, 2, 2**31 - 1, 2**32 - 1, 2**32, 2**40, 2**63 - 1, 2**64 - 1, 2**64, 2**96 + 5, 2**128 + 3]
NAMES = ["start", "noise", "minibatch", "frozen", "perturbation", "sharpness", "", "x" * 7]


def _numpy_seed(*parts: int | str) -> int:
    """The documented definition, straight from numpy: (w0 << 31) ^ w1 of SeedSequence(parts)."""
    import zlib

    entropy = [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]
    w = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return (int(w[0]) << 31) ^ int(w[1])


def _part(r: random.Random) -> int | str:
    c = r.random()
    if c < 0.3:
        return r.choice(EDGES)
    if c < 0.5:
        return r.choice(NAMES)
    return r.getrandbits(r.choice([1, 8, 31, 32, 33, 63, 64, 65, 100]))


def test_derive_seed_is_pinned() -> None:
    """The shipped records depend on these values: numpy's SeedSequence must not drift under us."""
    assert derive_seed(0, 0, "start") == 8363576739417240133
    assert derive_seed(3, 2**40, "noise") == 8999106059094427790
    assert derive_seed(2**63 - 1, 5, "minibatch") == 3731648332804200491
    assert derive_seeds((0,), [0], ("start",)) == [8363576739417240133]


@pytest.mark.parametrize("trial", range(8))
def test_derive_seeds_is_numpys_seed_sequence(trial: int) -> None:
    r = random.Random(trial)
    for _ in range(60):
        parts = r.randint(1, 5)
        position = r.randrange(parts)
        prefix = [_part(r) for _ in range(position)]
        suffix = [_part(r) for _ in range(parts - position - 1)]
        seeds = [_part(r) for _ in range(r.randint(1, 24))]
        got = derive_seeds(prefix, seeds, suffix)
        assert got == [_numpy_seed(*prefix, s, *suffix) for s in seeds], (prefix, seeds, suffix)
        assert got == [derive_seed(*prefix, s, *suffix) for s in seeds]


def test_derive_seeds_edges_and_large_batches() -> None:
    for prefix, suffix in [((), ()), ((7,), ("noise",)), ((2**32,), ("start", 2**70)), (("a", 1, 2), ())]:
        assert derive_seeds(prefix, EDGES, suffix) == [derive_seed(*prefix, s, *suffix) for s in EDGES]
    seeds = list(range(5000)) + [random.Random(0).getrandbits(63) for _ in range(500)]
    assert derive_seeds((11,), seeds, ("noise",)) == [derive_seed(11, s, "noise") for s in seeds]
    mixed = [3, 2**32, 5, 2**64 + 1, 2**31, 2**40]  # groups of word counts, results in input order
    assert derive_seeds((1,), mixed, ("start",)) == [derive_seed(1, s, "start") for s in mixed]
    assert derive_seeds((1,), range(3), ()) == [derive_seed(1, s) for s in range(3)]
    assert derive_seeds((1,), np.arange(4), ("x",)) == [derive_seed(1, s, "x") for s in range(4)]
    assert derive_seeds((1,), [], ("x",)) == []


def test_negative_seeds_raise_as_before() -> None:
    with pytest.raises(ValueError, match="non-negative") as loop:
        derive_seed(0, -1, "start")
    with pytest.raises(ValueError, match="non-negative") as batch:
        derive_seeds((0,), [3, -1, 4], ("start",))
    assert str(batch.value) == str(loop.value)
    with pytest.raises(ValueError, match="non-negative"):
        derive_seeds((-2,), [3], ("start",))
    with pytest.raises(ValueError, match="non-negative"):
        generators((0,), [-5], ())
    with pytest.raises(ValueError, match="non-negative"):
        landbench.make("saddle(dim=3)").sample_start([0, -1])
    with pytest.raises(ValueError, match="non-negative"):
        RunNoise(0, [1, -1], 3, torch.float32, "cpu")
    with pytest.raises(ValueError, match="non-negative"):
        run_keys(0, [-1])
    with pytest.raises(ValueError):
        seed_sequence_states([-1], 3)


def test_seed_sequence_states_is_numpys() -> None:
    r = random.Random(5)
    entropies = EDGES + [2**300 + 17] + [r.getrandbits(r.choice([16, 32, 63, 64, 128, 160])) for _ in range(300)]
    for n_words in (1, 2, 3, 4, 6, 9):
        want = np.array([np.random.SeedSequence(e).generate_state(n_words, np.uint32) for e in entropies])
        got = seed_sequence_states(entropies, n_words)
        assert got.dtype == np.uint32 and np.array_equal(got, want)
    small = [r.getrandbits(63) for _ in range(100)]  # the nested use: entropy is a derived seed
    want = np.array([np.random.SeedSequence(e).generate_state(3, np.uint32) for e in small])
    assert np.array_equal(seed_sequence_states(small, 3), want)


def test_generators_are_cpu_generator() -> None:
    seeds = [0, 1, 2**32 + 3, 99]
    batch = generators((4,), seeds, ("sharpness",))
    for seed, generator in zip(seeds, batch):
        alone = cpu_generator(4, seed, "sharpness")
        assert generator.initial_seed() == alone.initial_seed()
        assert torch.equal(torch.randn(5, generator=generator), torch.randn(5, generator=alone))


@pytest.mark.parametrize(
    "spec",
    ["saddle(dim=50)", "saddle(dim=5, index=2)", "pspin(dim=20, p=3)", "gaussian_field(dim=4)", "rosenbrock(dim=3)"],
)
def test_sample_start_is_the_per_seed_definition(spec: str) -> None:
    landscape = landbench.make(spec, seed=3)
    seeds = [0, 5, 2**32 + 1, 17, 2**63 - 1]
    rows = [landscape._sample_start(cpu_generator(landscape.seed, s, "start")) for s in seeds]
    want = torch.stack(rows).to(device=landscape.device, dtype=landscape.dtype)
    assert torch.equal(landscape.sample_start(seeds), want)
    one_by_one = torch.cat([landscape.sample_start([s]) for s in range(3)])
    assert torch.equal(landscape.sample_start(range(3)), one_by_one)


@pytest.mark.parametrize("model", ["gaussian", "student_t(nu=3)"])
def test_noise_streams_are_the_per_seed_definition(model: str) -> None:
    seeds, dim = [0, 9, 2**40, 3], 7
    stream = RunNoise(2, seeds, dim, torch.float64, "cpu", model)
    for seed, generator in zip(seeds, stream.generators):
        assert generator.initial_seed() == derive_seed(2, seed, "noise")
    first = stream.next().clone()
    if model == "gaussian":
        block = block_steps(dim)
        for row, seed in enumerate(seeds):
            generator = torch.Generator().manual_seed(derive_seed(2, seed, "noise"))
            assert torch.equal(first[row], torch.randn((block, dim), generator=generator, dtype=torch.float64)[0])


def test_frozen_and_minibatch_keys_are_the_per_seed_definition() -> None:
    seeds = [0, 1, 2**32, 77, 2**63 - 1]

    def nested(instance: int, name: str) -> torch.Tensor:
        words = [
            [int(w) for w in np.random.SeedSequence(derive_seed(instance, s, name)).generate_state(3, np.uint32)]
            for s in seeds
        ]
        return torch.tensor(words, dtype=torch.int64)

    assert torch.equal(frozen_keys(5, seeds), nested(5, "frozen"))
    assert torch.equal(run_keys(5, seeds), nested(5, "minibatch"))
    batch = Minibatches(5, seeds, 30, 4, "cpu")
    assert torch.equal(batch.keys, nested(5, "minibatch"))
    alone = [Minibatches(5, [s], 30, 4, "cpu") for s in seeds]
    for _ in range(10):
        assert torch.equal(batch.next(), torch.cat([a.next() for a in alone]))


def test_perturbation_generators_are_the_per_seed_definition() -> None:
    seeds = [4, 2**33, 0]
    param = torch.nn.Parameter(torch.zeros(3, 5))
    optimizer = PerturbedGD([param])
    optimizer.bind_runs(seeds, 6)
    generators = optimizer._samplers[param].generators
    assert [g.initial_seed() for g in generators] == [derive_seed(6, s, "perturbation") for s in seeds]
