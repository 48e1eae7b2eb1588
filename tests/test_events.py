"""The chunked event tracker against a plain per-step loop over the same loss histories."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from landbench.metrics.events import EventTracker, curve_steps


def naive_events(
    history: list[list[float]], threshold: float, f_star: float, targets: list[float], curve: list[int]
) -> dict:
    """The definitions of landbench.metrics.events, one run and one step at a time."""
    out: dict = {"diverged": [], "last": [], "escape": [], "hits": [], "curve": [], "held": []}
    for run in zip(*history):
        diverged, last, escape, hits, points = -1, math.nan, -1, [-1] * len(targets), []
        # held: the first t from which every later step is finite and within the target, if the last one is
        held = []
        for target in targets:
            ok = [math.isfinite(v) and v - f_star <= target for v in run]
            diverged_at = next((t for t, v in enumerate(run) if not math.isfinite(v)), None)
            if diverged_at is not None:
                ok = [o and t < diverged_at for t, o in enumerate(ok)]
            start = len(run)
            while start > 0 and ok[start - 1]:
                start -= 1
            held.append(start if start < len(run) else -1)
        out["held"].append(held)
        for t, loss in enumerate(run):
            if diverged < 0 and not math.isfinite(loss):
                diverged = t
            if diverged >= 0:
                continue
            last = loss
            if t >= 1 and escape < 0 and loss <= threshold:
                escape = t
            for i, target in enumerate(targets):
                if hits[i] < 0 and loss - f_star <= target:
                    hits[i] = t
        for s in curve:
            points.append(run[s] if diverged < 0 or s < diverged else math.nan)
        for key, value in zip(("diverged", "last", "escape", "hits", "curve"), (diverged, last, escape, hits, points)):
            out[key].append(value)
    return out


def _tracker(
    batch: int, steps: int, threshold: float, f_star: float, targets: list[float], curve_points: int, chunk: int
) -> EventTracker:
    """A float64 CPU tracker with one escape threshold, as the brute-force comparisons below use it."""
    return EventTracker(
        batch,
        steps,
        escape_thresholds=[threshold],
        f_star=f_star,
        targets=targets,
        curve_points=curve_points,
        device=torch.device("cpu"),
        dtype=torch.float64,
        chunk=chunk,
    )


@pytest.mark.parametrize("chunk", [1, 3, 7, 256])
def test_chunked_tracker_equals_the_per_step_definitions(chunk: int) -> None:
    generator = torch.Generator().manual_seed(0)
    steps, batch = 40, 6
    history = (2.0 * torch.rand(steps + 1, batch, generator=generator, dtype=torch.float64)).cumsum(0).flip(
        0
    ) / 20 - 1.0
    history[0] = 0.0  # every run starts at the saddle's value
    history[5, 1] = math.nan  # diverges at 5
    history[17:, 2] = math.inf  # diverges at 17
    history[0, 3] = math.nan  # diverges at 0
    history[38, 4] = -5.0  # below every target late, then fine again
    history[-8:, 5] = f_star = -1.0  # reaches f* for good 8 steps before the end ...
    history[-20, 5] = f_star  # ... after a first visit that it leaves
    threshold, targets = -0.5, [1.0, 0.3, 0.1, 1e-3]
    tracker = _tracker(batch, steps, threshold, f_star, targets, 12, chunk)
    per_step = torch.arange(1, batch + 1)  # run b spends b + 1 evaluations a step (as LBFGS might)
    for t in range(steps + 1):
        tracker.observe(t, history[t], per_step * t)
    tracker.flush()
    expected = naive_events(history.tolist(), threshold, f_star, targets, tracker.curve_steps)
    assert tracker.diverged_step.tolist() == expected["diverged"]
    torch.testing.assert_close(tracker.last_loss, torch.tensor(expected["last"], dtype=torch.float64), equal_nan=True)
    assert tracker.escape_steps[:, 0].tolist() == expected["escape"]
    assert tracker.first_hit_steps.tolist() == expected["hits"]
    expected_evals = [[-1 if h < 0 else (b + 1) * h for h in hits] for b, hits in enumerate(expected["hits"])]
    assert tracker.first_hit_evals.tolist() == expected_evals
    held_steps, held_evals = tracker.held()
    assert held_steps.tolist() == expected["held"]
    expected_held_evals = [[-1 if h < 0 else (b + 1) * h for h in held] for b, held in enumerate(expected["held"])]
    assert held_evals.tolist() == expected_held_evals
    assert tracker.evals.tolist() == [(b + 1) * steps for b in range(batch)]  # the whole budget, diverged or not
    torch.testing.assert_close(tracker.curve, torch.tensor(expected["curve"], dtype=torch.float64), equal_nan=True)
    assert expected["diverged"][:4] == [-1, 5, 17, 0]
    assert expected["held"][5][-1] == steps - 7 and expected["hits"][5][-1] == steps - 19  # left, came back
    assert all(h == [-1] * len(targets) for h in expected["held"][1:4])  # a diverged run holds nothing


def test_curve_steps_are_log_spaced_and_include_both_ends() -> None:
    steps = curve_steps(10_000, 50)
    assert steps[0] == 0 and steps[1] == 1 and steps[-1] == 10_000
    assert steps == sorted(set(steps)) and 35 <= len(steps) <= 51
    ratios = [b / a for a, b in zip(steps[20:], steps[21:])]
    assert max(ratios) < 1.3  # about 10**(4/49) = 1.21 apart in the log-spaced part
    assert curve_steps(3, 50) == [0, 1, 2, 3]


def test_observing_out_of_order_is_refused() -> None:
    tracker = EventTracker(
        1,
        5,
        escape_thresholds=[],
        f_star=None,
        targets=[1.0],
        curve_points=5,
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    tracker.observe(0, torch.zeros(1), 0)
    with pytest.raises(AssertionError):
        tracker.observe(2, torch.zeros(1), 2)


def _spent_at(steps: list[list[int]], spent: list[int]) -> list[list[int]]:
    """The evaluations spent by each of ``steps`` (-1 stays -1)."""
    return [[-1 if h < 0 else spent[h] for h in row] for row in steps]


@pytest.mark.parametrize("counts", ["two a step", "irregular ints", "ints then per run"])
def test_random_histories_with_every_way_of_counting_match_the_definitions(counts: str) -> None:
    """Seeded random loss histories (ties with the targets, NaN and inf at random steps, lengths
    around a chunk's edge) with evaluation counts given as one int for all runs (kept on the host
    until a flush: two a step as SAM, or irregular), or switching to per-run tensors mid-chunk."""
    rng = torch.Generator().manual_seed(12)
    targets, f_star, threshold = [1.0, 0.25, 0.0625, 1e-3], -1.0, -0.5
    for case in range(24):
        steps = int(torch.randint(1, 300, (1,), generator=rng))
        batch = int(torch.randint(1, 6, (1,), generator=rng))
        chunk = [1, 7, 64, 256][case % 4]
        levels = torch.tensor([f_star + t for t in targets] + [threshold, 0.0, 2.0], dtype=torch.float64)
        history = levels[torch.randint(0, len(levels), (steps + 1, batch), generator=rng)]  # exact ties
        history += torch.where(torch.rand(history.shape, generator=rng) < 0.5, 0.0, 1e-3)
        for _ in range(2):
            t, b = (
                int(torch.randint(0, steps + 1, (1,), generator=rng)),
                int(torch.randint(0, batch, (1,), generator=rng)),
            )
            history[t, b] = [math.nan, math.inf, -math.inf][case % 3]
        tracker = _tracker(batch, steps, threshold, f_star, targets, 9, chunk)
        spent, expected_evals = 0, []
        for t in range(steps + 1):
            if counts == "two a step":
                spent = 2 * t
            else:
                spent += int(torch.randint(0, 4, (1,), generator=rng)) if t else 0
            per_run = counts == "ints then per run" and t > steps // 2
            tracker.observe(t, history[t], torch.full((batch,), spent) if per_run else spent)
            expected_evals.append(spent)
        tracker.flush()
        expected = naive_events(history.tolist(), threshold, f_star, targets, tracker.curve_steps)
        assert tracker.diverged_step.tolist() == expected["diverged"], case
        assert tracker.escape_steps[:, 0].tolist() == expected["escape"], case
        assert tracker.first_hit_steps.tolist() == expected["hits"], case
        held_steps, held_evals = tracker.held()
        assert held_steps.tolist() == expected["held"], case
        assert tracker.first_hit_evals.tolist() == _spent_at(expected["hits"], expected_evals), case
        assert held_evals.tolist() == _spent_at(expected["held"], expected_evals), case
        assert tracker.evals.tolist() == [expected_evals[-1]] * batch, case
        torch.testing.assert_close(tracker.curve, torch.tensor(expected["curve"], dtype=torch.float64), equal_nan=True)


def _history(rng: torch.Generator, steps: int, batch: int, dtype: torch.dtype, levels: list[float]) -> torch.Tensor:
    """Losses falling through ``levels`` at random rates, a fifth of them at or next to a level in
    ``dtype`` (the ties a float64 comparison and one in ``dtype`` could split)."""
    rate = 8 * torch.rand(batch, generator=rng, dtype=torch.float64)
    t = torch.arange(steps + 1, dtype=torch.float64)[:, None]
    noise = 2 * torch.rand(steps + 1, batch, generator=rng, dtype=torch.float64)
    history = (min(levels) + 10 ** (1 - 3 * rate * t / max(steps, 1)) * noise).to(dtype)
    exact = torch.tensor(levels, dtype=torch.float64).to(dtype)
    inf = torch.tensor(math.inf, dtype=dtype)
    near = torch.cat([exact, torch.nextafter(exact, inf), torch.nextafter(exact, -inf)])
    pick = near[torch.randint(0, len(near), history.shape, generator=rng)]
    return torch.where(torch.rand(history.shape, generator=rng) < 0.2, pick, history)


def _state(tracker: EventTracker) -> list[torch.Tensor]:
    held = tracker.held()
    assert held is not None and tracker.escape_steps is not None
    return [
        tracker.diverged_step,
        tracker.alive,
        tracker.last_loss,
        tracker.evals,
        tracker.curve,
        tracker.escape_steps,
        tracker.first_hit_steps,
        tracker.first_hit_evals,
        *held,
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reading_the_chunk_on_the_host_changes_no_event(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the CPU a flush reads the chunk on the host: it skips the masks when every run is alive
    and every loss finite, and searches only the runs where a search can change something. The
    same histories through a tracker that never does (as on a GPU) give bit for bit the same
    events, both equal to the definitions, in float32 as in float64; every shortcut is taken."""
    from landbench.metrics import events

    taken: dict[str, int] = {"all finite": 0, "masked": 0, "all runs": 0, "some runs": 0, "no run": 0}
    all_observed, columns = EventTracker._all_observed, events._columns

    def counted_all_observed(self: EventTracker, losses: torch.Tensor) -> bool:
        answer = all_observed(self, losses)
        taken["all finite" if answer else "masked"] += 1
        return answer

    def counted_columns(values: torch.Tensor, need: torch.Tensor | None) -> tuple:
        if need is not None:
            taken["all runs" if bool(need.all()) else "some runs" if bool(need.any()) else "no run"] += 1
        return columns(values, need)

    monkeypatch.setattr(EventTracker, "_all_observed", counted_all_observed)
    monkeypatch.setattr(events, "_columns", counted_columns)
    rng = torch.Generator().manual_seed(3)
    targets, f_star, threshold = [10.0, 1.0, 0.25, 1e-3, 1e-8], -0.25, -0.125
    for case in range(30):
        steps, batch = int(torch.randint(1, 400, (1,), generator=rng)), int(torch.randint(1, 7, (1,), generator=rng))
        chunk = [1, 7, 64, 256, 300][case % 5]
        history = _history(rng, steps, batch, dtype, [f_star + t for t in targets] + [threshold])
        for _ in range(case % 3):  # a divergence, some at a chunk's first step
            t = int(torch.randint(0, steps + 1, (1,), generator=rng)) if case % 2 else chunk * (case % 4) % (steps + 1)
            history[t, int(torch.randint(0, batch, (1,), generator=rng))] = [math.nan, math.inf, -math.inf][case % 3]
        trackers = []
        for host in (True, False):
            tracker = EventTracker(
                batch,
                steps,
                escape_thresholds=[threshold],
                f_star=f_star,
                targets=targets,
                curve_points=9,
                device=torch.device("cpu"),
                dtype=dtype,
                chunk=chunk,
            )
            tracker._host_decides = host
            trackers.append(tracker)
        for t in range(steps + 1):
            evals = torch.full((batch,), 3 * t) if case % 4 == 3 and t > steps // 2 else 3 * t
            for tracker in trackers:
                tracker.observe(t, history[t], evals)
        for tracker in trackers:
            tracker.flush()
        for a, b in zip(_state(trackers[0]), _state(trackers[1])):
            assert (
                a.dtype == b.dtype and torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())
            )
        expected = naive_events(history.tolist(), threshold, f_star, targets, trackers[0].curve_steps)
        held_steps, _ = trackers[0].held()
        assert trackers[0].diverged_step.tolist() == expected["diverged"], case
        assert trackers[0].escape_steps[:, 0].tolist() == expected["escape"], case
        assert trackers[0].first_hit_steps.tolist() == expected["hits"], case
        assert held_steps.tolist() == expected["held"], case
        curve = torch.tensor(expected["curve"], dtype=torch.float64).to(dtype)
        torch.testing.assert_close(trackers[0].curve, curve, rtol=0, atol=0, equal_nan=True)
    assert min(taken.values()) > 0, taken


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_a_bound_in_the_losses_dtype_decides_as_float64_does(dtype: torch.dtype) -> None:
    """A flush compares the losses with one bound per level in their own dtype: for every value x
    of the dtype near a level, ``x <= bound`` is the float64 comparison of the definitions."""
    from landbench.metrics.events import _bound

    inf = torch.tensor(math.inf, dtype=dtype)
    for f_star in (-1.0, -0.25, 0.0, 3.0, 1e10):
        for target in (10.0, 1.0, 0.1, 1e-3, 1e-8):
            bound = _bound(lambda f, s=f_star, e=target: f - s <= e, dtype)
            start = torch.tensor(f_star + target, dtype=torch.float64).to(dtype).float()
            values = [torch.tensor(bound, dtype=dtype), inf, -inf]
            up, down = start, start
            for _ in range(4):  # float32 neighbours, rounded to a 16-bit dtype where it is one
                up, down = torch.nextafter(up, inf.float()), torch.nextafter(down, -inf.float())
                values += [up.to(dtype), down.to(dtype)]
            for x in values:
                assert (float(x) <= bound) == (float(x) - f_star <= target), (f_star, target, float(x), bound)
            if dtype in (torch.float32, torch.float64) and bound < math.inf:  # the largest such value
                assert not float(torch.nextafter(torch.tensor(bound, dtype=dtype), inf)) - f_star <= target
    assert _bound(lambda f: f <= math.inf, dtype) == math.inf and _bound(lambda f: f <= math.nan, dtype) == -math.inf


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_the_walk_from_the_level_finds_the_bisections_bound(dtype: torch.dtype) -> None:
    """The bound is found by walking from the level rounded to the dtype (a step or two), and by
    bisection where that walk is far off: the same value either way, for levels small and large,
    negative, near overflow, at the dtype's values and between them, and from a poor start."""
    from landbench.metrics.events import _bound

    generator = torch.Generator().manual_seed(12)
    levels = [0.0, -0.0, 1.0, -1.0, 0.1, -0.3, 1e-30, -1e-30, 3e38, -3e38, 6.5e4, 1e300, 5e-324]
    levels += (torch.randn(40, generator=generator, dtype=torch.float64) * 10.0 ** torch.randint(-8, 9, (40,))).tolist()
    for level in levels:
        for f_star in (None, 0.0, -0.25, 3.0):
            holds = (lambda f, h=level: f <= h) if f_star is None else (lambda f, s=f_star, e=level: f - s <= e)
            near = level if f_star is None else f_star + level
            bisected = _bound(holds, dtype)
            starts = torch.tensor([near, near * (1 + 1e-3), -near, math.inf, -math.inf], dtype=torch.float64)
            for start in [*starts.to(dtype).tolist(), math.nan, 1e300]:  # values of the dtype, none, too large
                assert _bound(holds, dtype, start) == bisected, (dtype, level, f_star, start)


def _tracker_with_levels(f_star: object, thresholds: list) -> EventTracker:
    tracker = EventTracker(
        1,
        1,
        escape_thresholds=thresholds,
        f_star=f_star,
        targets=[1e-9],
        curve_points=2,
        device=torch.device("cpu"),
        dtype=torch.float64,
    )
    star = float(np.float32(0.1))
    tracker.observe(0, torch.tensor([0.5], dtype=torch.float64), 0)
    tracker.observe(1, torch.tensor([star + 2e-9], dtype=torch.float64), 1)
    tracker.flush()
    return tracker


def test_numpy_float32_f_star_and_thresholds_are_read_in_float64() -> None:
    """A plug-in's f* or escape threshold given as a numpy float32 is compared in float64, as
    before the bounds were (the gap f - f* is 2e-9 > the target 1e-9; the loss is above the threshold)."""
    star = np.float32(0.1)
    reference = _tracker_with_levels(float(star), [float(star)])
    numpy_typed = _tracker_with_levels(star, [star])
    assert reference.first_hit_steps.tolist() == [[-1]]
    assert reference.escape_steps.tolist() == [[-1]]
    assert numpy_typed.first_hit_steps.tolist() == reference.first_hit_steps.tolist()
    assert numpy_typed.escape_steps.tolist() == reference.escape_steps.tolist()
