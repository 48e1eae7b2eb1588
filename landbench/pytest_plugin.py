"""landbench's pytest plugin: installing landbench makes these fixtures and options available in
every pytest run (it is registered through the ``pytest11`` entry point).

Fixtures:

``landbench_problem``
    A test that asks for it runs once per problem of the suite (``--landbench-suite``, default
    ``smoke``) at each of its dimensions (or at ``--landbench-dims``), noise levels and laws, and batch
    sizes (finite sums); the value is
    a :class:`SuiteProblem` (``str()`` of it is the canonical spec, its budget is the suite's).
``landbench_suite``
    The loaded suite (:class:`landbench.suite.Suite`).
``landbench_run``
    ``landbench_run(problem, optimizer, seeds=..., steps=..., noise=..., **settings)`` runs the
    optimizer (one batch, on ``--landbench-device``) and returns the records, one per run, as
    :func:`landbench.run` does; the same call within a session runs once.
``landbench_benchmark``
    The same call, timed by pytest-benchmark: only the optimisation loop is in the timed region
    (building the instance and the records is not), CUDA is synchronised inside it, and the
    runs' headline numbers (:func:`landbench.testing.summary`) go to ``benchmark.extra_info``.
    Curvature metrics are off unless asked for (``curvature=True``).

The assertions to use on the records are in :mod:`landbench.testing`. The plugin imports landbench
(and torch) only when a test asks for one of its fixtures.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from landbench.suite import Suite

DEFAULT_SUITE = "smoke"
DEFAULT_SEEDS = 8
RunFunction = Callable[..., list[dict[str, Any]]]


@dataclass(frozen=True)
class SuiteProblem:
    """One problem of a suite at one dimension, noise level and law, and batch size, with the suite's
    budget for it."""

    spec: str
    family: str
    dim: int
    noise: float
    steps: int
    seeds: tuple[int, ...]
    instance: int
    optimizers: tuple[str, ...]
    dtype: str
    tagged: bool = False  # the id names the instance (the suite lists several, or another than 0)
    noise_model: str = "gaussian"
    batch_size: int | None = None  # a finite sum's minibatch size; None: the full batch

    def __str__(self) -> str:
        return self.spec

    @property
    def id(self) -> str:
        """The test id: the spec, the noise level (and law) when there is noise, the batch size of a
        minibatch, the instance when it is tagged."""
        noise = f"-noise={self.noise:g}" if self.noise != 0 else ""
        noise += f"-{self.noise_model}" if self.noise_model != "gaussian" else ""
        batch = f"-batch={self.batch_size}" if self.batch_size is not None else ""
        return self.spec + noise + batch + (f"-instance={self.instance}" if self.tagged else "")


# -- options ----------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("landbench", "landbench: optimizer benchmarks on analytic landscapes")
    group.addoption(
        "--landbench-suite",
        metavar="NAME|PATH",
        help=f"suite whose problems landbench_problem runs over: a shipped suite or a .toml file "
        f"(ini: landbench_suite; default {DEFAULT_SUITE})",
    )
    group.addoption(
        "--landbench-dims",
        metavar="LIST",
        help="comma-separated dimensions that replace the suite's, e.g. 10,100 (ini: landbench_dims)",
    )
    group.addoption(
        "--landbench-seeds",
        metavar="N",
        help=f"run seeds per landbench_run call that gives none: 0..N-1 (ini: landbench_seeds; default: "
        f"the suite problem's seeds, else {DEFAULT_SEEDS})",
    )
    group.addoption(
        "--landbench-device", metavar="DEVICE", help="cpu, cuda or cuda:N (ini: landbench_device; default cpu)"
    )
    parser.addini("landbench_suite", "default of --landbench-suite")
    parser.addini("landbench_dims", "default of --landbench-dims")
    parser.addini("landbench_seeds", "default of --landbench-seeds")
    parser.addini("landbench_device", "default of --landbench-device")


def _option(config: pytest.Config, name: str) -> str | None:
    """A landbench option: the command line's, else the ini file's, else None."""
    value = config.getoption(f"landbench_{name}")
    if value is None:
        value = config.getini(f"landbench_{name}") or None
    return None if value is None else str(value).strip()


def _dims(config: pytest.Config) -> list[int] | None:
    text = _option(config, "dims")
    if not text:
        return None
    try:
        dims = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        dims = []
    if not dims or any(d < 1 for d in dims):
        raise pytest.UsageError(
            f"--landbench-dims: expected positive integers separated by commas (e.g. 10,100), got {text!r}"
        )
    return list(dict.fromkeys(dims))


def _seed_count(config: pytest.Config) -> int | None:
    text = _option(config, "seeds")
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise pytest.UsageError(f"--landbench-seeds: expected a positive number of run seeds, got {text!r}")
    return int(text)


def pytest_configure(config: pytest.Config) -> None:
    # Check the plain options up front, so that a typo fails the session before anything runs.
    _dims(config)
    _seed_count(config)


def pytest_report_header(config: pytest.Config) -> str | None:
    chosen = {name: _option(config, name) for name in ("suite", "dims", "seeds", "device")}
    shown = ", ".join(f"{name}={value}" for name, value in chosen.items() if value)
    return f"landbench: {shown}" if shown else None


# -- parametrisation over a suite's problems ------------------------------------------------------------


def suite_problems(suite: Suite, dims: Sequence[int] | None = None) -> list[SuiteProblem | tuple[str, str]]:
    """The suite's problems at each of their dimensions (or at ``dims``), noise levels and instances,
    each with its entry's budget (an entry that repeats another's problem with another budget is
    kept). A problem that cannot take one of ``dims`` comes as ``(spec, reason)`` instead (the test
    is skipped)."""
    from landbench.errors import LandbenchError
    from landbench.landscapes.finite_sum import applicable_batch_size
    from landbench.noise import effective_noise_model
    from landbench.spec import parse_spec
    from landbench.suite import canonical_problem

    out: dict[str | SuiteProblem, SuiteProblem | tuple[str, str]] = {}
    for entry in suite.problems:
        specs = list(entry.problems)
        if dims is not None:
            specs = []
            for spec in dict.fromkeys(_without_dim(p) for p in entry.problems):
                for dim in dims:
                    try:
                        specs.append(canonical_problem(spec, dim, "--landbench-dims"))
                    except LandbenchError as error:
                        out.setdefault(f"{spec}-dim={dim}", (f"{spec}-dim={dim}", f"{spec} at dim={dim}: {error}"))
        for spec in specs:
            parsed = parse_spec(spec)
            laws = itertools.product(entry.noise, entry.noise_models, entry.batch_sizes, entry.instances)
            for noise, model, batch, instance in laws:
                problem = SuiteProblem(
                    spec=spec,
                    family=parsed.name,
                    dim=int(parsed.kwargs["dim"]),
                    noise=noise,
                    steps=entry.steps,
                    seeds=entry.seeds,
                    instance=instance,
                    optimizers=entry.optimizers or suite.optimizers,
                    dtype=entry.dtype or suite.settings.dtype,
                    tagged=entry.instances != (0,),
                    noise_model=effective_noise_model(noise, model),
                    batch_size=applicable_batch_size(spec, batch),
                )
                out.setdefault(problem, problem)
    return list(out.values())


def _without_dim(spec: str) -> str:
    from landbench.spec import format_spec, parse_spec

    parsed = parse_spec(spec)
    return format_spec(parsed.name, {k: v for k, v in parsed.kwargs.items() if k != "dim"})


def _load_suite(config: pytest.Config) -> Suite:
    from landbench.errors import LandbenchError
    from landbench.suite import load_suite

    name = _option(config, "suite") or DEFAULT_SUITE
    try:
        return load_suite(name)
    except LandbenchError as error:
        raise pytest.UsageError(f"--landbench-suite: {error}") from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "landbench_problem" not in metafunc.fixturenames:
        return
    problems = suite_problems(_load_suite(metafunc.config), _dims(metafunc.config))
    params = [
        pytest.param(p, id=p.id)
        if isinstance(p, SuiteProblem)
        else pytest.param(None, id=p[0], marks=pytest.mark.skip(reason=p[1]))
        for p in problems
    ]
    metafunc.parametrize("landbench_problem", params, indirect=True)


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def landbench_problem(request: pytest.FixtureRequest) -> SuiteProblem:
    """One problem of ``--landbench-suite`` at one dimension and noise level (the test runs once per
    problem); ``str(landbench_problem)`` is its canonical spec, and ``landbench_run`` takes it with
    its budget (steps, noise, seeds, dtype)."""
    if not hasattr(request, "param"):
        raise pytest.UsageError("landbench_problem is parametrised by the plugin; do not request it indirectly")
    return request.param


@pytest.fixture(scope="session")
def landbench_suite(pytestconfig: pytest.Config) -> Suite:
    """The suite named by ``--landbench-suite`` (or the ini option ``landbench_suite``; default smoke)."""
    return _load_suite(pytestconfig)


@pytest.fixture(scope="session")
def landbench_run(pytestconfig: pytest.Config) -> RunFunction:
    """``landbench_run(problem, optimizer, seeds=None, steps=None, noise=None, instance=0, **settings)``:
    the records of the runs (one per seed), as :func:`landbench.run` gives them. ``problem`` is a
    spec or a ``landbench_problem``, whose steps, noise (and law), batch size, seeds and dtype are the
    defaults; otherwise
    seeds come from ``--landbench-seeds`` (default 8) and steps default to 1000. Runs go to
    ``--landbench-device``. The same call twice in a session runs once (each call gets a copy)."""
    memo: dict[str, list[dict[str, Any]]] = {}

    def run(problem: Any, optimizer: Any, **kwargs: Any) -> list[dict[str, Any]]:
        import landbench

        arguments = _run_arguments(pytestconfig, problem, optimizer, kwargs)
        key = json.dumps(arguments, sort_keys=True, default=str)
        if key not in memo:
            memo[key] = landbench.run(**arguments)
        return copy.deepcopy(memo[key])

    return run


if importlib.util.find_spec("pytest_benchmark") is not None:

    @pytest.fixture
    def landbench_benchmark(benchmark: Any, pytestconfig: pytest.Config) -> RunFunction:
        """``landbench_benchmark(problem, optimizer, **like landbench_run)``: times the runs with
        pytest-benchmark (only the optimisation loop: not the spot check of independence, which
        re-makes one run alone, nor the curvature metrics unless ``curvature=True`` is given; CUDA
        synchronised inside the timed region), puts their headline numbers in
        ``benchmark.extra_info`` and returns their records."""

        def timed(problem: Any, optimizer: Any, **kwargs: Any) -> list[dict[str, Any]]:
            from landbench.api import plan
            from landbench.testing import summary

            kwargs.setdefault("curvature", False)
            prepared = plan(**_run_arguments(pytestconfig, problem, optimizer, kwargs))
            device = prepared.landscape.device

            def optimise() -> Any:
                outcome = prepared.execute(verify=False)
                if device.type == "cuda":
                    import torch

                    torch.cuda.synchronize(device)
                return outcome

            outcome = benchmark(optimise)
            records = prepared.records(outcome)
            info = summary(records)
            seconds = benchmark.stats.stats.median if benchmark.stats else outcome.wall_s
            work = len(prepared.seeds) * prepared.steps
            info.update(
                {
                    "dim": prepared.landscape.dim,
                    "batch_mode": outcome.mode,
                    "steps_per_second": work / seconds,
                    "coordinate_steps_per_second": work * prepared.landscape.dim / seconds,
                }
            )
            benchmark.extra_info.update(info)
            return records

        return timed

else:

    @pytest.fixture
    def landbench_benchmark() -> RunFunction:
        """Needs pytest-benchmark (``pip install pytest-benchmark``)."""
        pytest.fail("landbench_benchmark needs pytest-benchmark: pip install pytest-benchmark", pytrace=False)


def _run_arguments(config: pytest.Config, problem: Any, optimizer: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`landbench.run` for a fixture call: the problem's budget and
    the command line's options fill in what the call leaves out."""
    arguments = dict(kwargs)
    if isinstance(problem, SuiteProblem):
        arguments.setdefault("steps", problem.steps)
        arguments.setdefault("noise", problem.noise)
        arguments.setdefault("dtype", problem.dtype)
        arguments.setdefault("instance", problem.instance)
        arguments.setdefault("noise_model", problem.noise_model)
        arguments.setdefault("batch_size", problem.batch_size)
        default_seeds: Any = _seed_count(config) or list(problem.seeds)
        problem = problem.spec
    else:
        default_seeds = _seed_count(config) or DEFAULT_SEEDS
    if arguments.get("seeds") is None:
        arguments["seeds"] = default_seeds
    arguments.setdefault("device", _option(config, "device") or "cpu")
    return {"problem": problem, "optimizer": optimizer, **arguments}
