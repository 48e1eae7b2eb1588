"""The ``landbench`` command: list, describe, connect, run, rank."""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import click

from landbench._version import __version__
from landbench.claims.base import TIERS
from landbench.errors import LandbenchError
from landbench.executors import EXECUTORS
from landbench.executors.processes import MAX_WORKERS
from landbench.landscapes import FAMILIES, family, make
from landbench.landscapes.base import family_params
from landbench.landscapes.finite_sum import effective_batch_size
from landbench.mode_connectivity import connectivity
from landbench.noise import check_noise_model
from landbench.outcomes import split_failed
from landbench.planning import Shard, shard_scenarios
from landbench.preflight import check_suite
from landbench.ranking import rank
from landbench.references import available_references, load_reference
from landbench.runner import run_suite
from landbench.settings import check_batch_size, normalize_seeds
from landbench.spec import bind_params, format_value, parse_spec
from landbench.store import load_results
from landbench.suite import Suite, adhoc_suite, available_suites, load_suite
from landbench.threads import ENV, check_threads, oversubscription, requested_threads
from landbench.tuning import PlanEntry
from landbench.tuning import plan as tuning_plan

DEFAULT_OUT = "landbench_results"
F = TypeVar("F", bound=Callable[..., Any])


def _friendly(command: F) -> F:
    """Turn landbench's input errors into a one-line message and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BrokenPipeError:  # the reader went away (``| head``): stop quietly, as Python's docs advise
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python exits
            sys.exit(1)
        except (LandbenchError, OSError) as exc:  # bad input, or a path that cannot be read or written
            click.echo(f"Error: {_one_line(exc)}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def _one_line(exc: BaseException) -> str:
    """An error's message on one line: control characters dropped, cut to 2000 characters."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc)
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= 2000 else text[:1997] + "..."


class _OneLineUsageError(click.UsageError):
    """A usage error shown as landbench shows every input error: ``Error: ...`` on one line, exit 2
    (click's own adds the usage line and a hint to run ``--help`` above it)."""

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {_one_line(Exception(self.format_message()))}", err=True)


def _shown(value: str) -> str:
    """A value as an error message quotes it: its repr, cut to 40 characters."""
    return repr(value) if len(value) <= 40 else repr(value[:37] + "...")


def _is_whole(text: str) -> bool:
    """Whether ``text`` (stripped) is a whole number in ASCII digits with an optional sign: ``int()``
    also takes other scripts' digits, fullwidth forms and underscores (``"1_000"``)."""
    text = text.strip()
    digits = text[1:] if text[:1] in ("+", "-") else text
    return digits.isascii() and digits.isdigit()


class _Whole(click.IntRange):
    """A whole number in a range, written in ASCII digits (an optional sign), whose error for what is
    not one names the range too (click's says only "'1.5' is not a valid integer range")."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        bounded = self.min is not None or self.max is not None  # else the command checks its own range
        self._where = f" in the range {self._describe_range()}" if bounded else ""
        if not bounded:
            self.name = "integer"  # the help's metavar: no range to speak of

    def _describe_range(self) -> str:
        """The range as click shows it in ``--help`` (``x>=1``); nothing without bounds (click's would
        print ``x<=None``)."""
        return super()._describe_range() if self.min is not None or self.max is not None else ""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            shown = _shown(value)
            if not _is_whole(value):
                self.fail(f"{shown} is not a whole number{self._where}.", param, ctx)
            digits = len(value.strip().lstrip("+-"))
            if digits > 4000:  # int() refuses more than 4300 digits; no range here reaches them
                self.fail(f"{shown} ({digits} digits) is too long a number{self._where}.", param, ctx)
        return super().convert(value, param, ctx)


class _Commands(click.Group):
    """landbench's command group: a bad option, value or command (of landbench or of a subcommand)
    is one line; ``landbench`` alone still shows its help."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with _one_line_usage():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_line_usage():
            return super().invoke(ctx)


@contextlib.contextmanager
def _one_line_usage() -> Iterator[None]:
    """Re-raise click's usage errors as :class:`_OneLineUsageError` (its no-arguments help aside)."""
    try:
        yield
    except click.UsageError as exc:
        if isinstance(exc, _OneLineUsageError) or type(exc).__name__ == "NoArgsIsHelpError":
            raise
        raise _OneLineUsageError(exc.format_message(), exc.ctx) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="landbench")
def main() -> None:
    """Benchmark gradient-based optimizers on analytic loss landscapes."""
    warnings.formatwarning = _one_line_warning


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """landbench's warnings on the command line as ``Warning: ...`` on one line, without the file,
    line and source of the code that raised them (they say what happened to the user's runs);
    other libraries' warnings as Python shows them."""
    if Path(filename).resolve().is_relative_to(Path(__file__).resolve().parent):
        return f"Warning: {_one_line(Exception(str(message)))}\n"
    return _python_warning(message, category, filename, lineno, line)


_python_warning = warnings.formatwarning


# --- list ---------------------------------------------------------------------------------------


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@_friendly
def list_command(as_json: bool) -> None:
    """The landscape families (with their parameters) and the shipped suites."""
    families = {
        name: {
            "formula": cls.formula,
            "reference": cls.reference,
            "start": cls.start,
            "parameters": family_params(cls.params),
        }
        for name, cls in FAMILIES.items()
    }
    suites = {}
    for name, path in available_suites().items():
        suite = load_suite(path)
        suites[name] = {"description": suite.description, "scenarios": len(suite.scenarios()), "path": str(path)}
    if as_json:
        click.echo(json.dumps({"families": families, "suites": suites}, indent=2))
        return
    click.echo("Landscape families (landbench describe NAME for details):")
    for name, info in families.items():
        params = ", ".join(
            p["name"] if p["required"] else f"{p['name']}={format_value(p['default'])}" for p in info["parameters"]
        )
        click.echo(f"  {name}({params})")
        click.echo(f"      {info['formula']}")
    click.echo("\nSuites (landbench run NAME):")
    width = max(map(len, suites), default=0)
    for name, info in suites.items():
        click.echo(f"  {name:<{width}} {info['scenarios']:>4} scenarios  {info['description']}")


# --- describe -----------------------------------------------------------------------------------


@main.command()
@click.argument("spec")
@click.option("--instance", default=0, show_default=True, type=_Whole(), help="Instance seed of a random family.")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float64"]),
    default="float64",
    show_default=True,
    help="Precision of the instance built to describe it (float32 halves the memory of a big spin glass).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@_friendly
def describe(spec: str, instance: int, dtype: str, as_json: bool) -> None:
    """Formula, parameters and known critical points of SPEC.

    SPEC is a family name ("saddle") or a full spec ("saddle(dim=10, index=2)"); with a
    dimension, the instance's critical points are listed too.
    """
    parsed = parse_spec(spec, what="problem")
    cls = family(parsed.name)
    if "dim" not in parsed.kwargs:
        bind_params(cls.family, [p for p in cls.params if p.name != "dim"], parsed.kwargs, also_valid=["dim"])
        if parsed.kwargs:  # checked, but a family page has no instance to give them to
            given = ", ".join(f"{k}={format_value(v)}" for k, v in parsed.kwargs.items())
            click.echo(
                f"note: the family page; give a dim, as in {cls.family}(dim=N, {given}), to describe an instance",
                err=True,
            )
        info: dict[str, Any] = {
            "family": cls.family,
            "formula": cls.formula,
            "reference": cls.reference,
            "start": cls.start,
            "parameters": family_params(cls.params),
            "doc": inspect.cleandoc(cls.__doc__ or ""),
        }
    else:
        info = make(parsed, seed=instance, dtype=dtype).describe()
        info["doc"] = inspect.cleandoc(cls.__doc__ or "")
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    _print_description(info)


def _print_description(info: dict[str, Any]) -> None:
    click.echo(info.get("spec", info["family"]))
    click.echo(f"  {info['formula']}")
    click.echo(f"  reference: {info['reference']}")
    click.echo(f"  start: {info['start']}")
    if "spec" not in info:
        click.echo("  parameters:")
        for p in info["parameters"]:
            default = "required" if p["required"] else f"default {format_value(p['default'])}"
            click.echo(f"    {p['name']:<12} {p['doc']} ({p['valid']}; {default})")
        click.echo("\n" + info["doc"])
        return
    click.echo("  parameters: " + ", ".join(f"{k}={format_value(v)}" for k, v in info["parameters"].items()))
    click.echo(f"  f* = {info['f_star']}")
    for name, value in info.get("facts", {}).items():
        click.echo(f"  {name}: {_short(value) if isinstance(value, float) else value}")
    points = ([info["saddle"]] if info["saddle"] else []) + info["minima"] + info.get("saddles", [])
    for point in points:
        hessian = ", ".join(
            f"{k} {_short(point[k])}" for k in ("lambda_max", "lambda_min", "trace") if point[k] is not None
        )
        click.echo(
            f"  {point['kind']}: value {_short(point['value'])}, index {point['index']}"
            + (f"; Hessian {hessian}" if hessian else "")
        )
        if "point" in point:
            click.echo(f"      at {point['point']}")
        if point.get("note"):
            click.echo(f"      {point['note']}")


def _short(value: float) -> str:
    return f"{value:.6g}"


# --- connect ------------------------------------------------------------------------------------


def _point(value: str | None, name: str) -> list[float] | None:
    if value is None:
        return None
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = None
    if not isinstance(parsed, (list, tuple)) or not all(isinstance(v, (int, float)) for v in parsed):
        raise click.BadParameter(f"expected a list of numbers such as [1.0, 0.0], got {value!r}", param_hint=name)
    return [float(v) for v in parsed]


@main.command()
@click.argument("spec")
@click.option(
    "--between",
    nargs=2,
    type=_Whole(),
    default=(0, 1),
    show_default=True,
    metavar="I J",
    help="Two known minima (indices as `landbench describe` lists them).",
)
@click.option("--a", "point_a", metavar="LIST", help="The first end point, e.g. '[1.0, 0.0]' (instead of --between).")
@click.option("--b", "point_b", metavar="LIST", help="The second end point.")
@click.option("--instance", default=0, show_default=True, type=_Whole(), help="Instance seed of a random family.")
@click.option(
    "--points",
    default=101,
    show_default=True,
    type=_Whole(2, 1_000_000),
    help="Points at which each path's loss is reported.",
)
@click.option(
    "--steps",
    default=500,
    show_default=True,
    type=_Whole(0, 10_000_000),
    help="Adam steps fitting the Bezier curve's bend.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (both profiles) instead of text.")
@_friendly
def connect(
    spec: str,
    between: tuple[int, int],
    point_a: str | None,
    point_b: str | None,
    instance: int,
    points: int,
    steps: int,
    as_json: bool,
) -> None:
    """Loss barriers between two points of SPEC: the straight segment and a fitted Bezier curve.

    The barrier of a path is its highest loss minus the higher end (Garipov et al. 2018). By
    default the ends are the landscape's first two known minima; --between picks others, --a and
    --b give points.
    """
    landscape = make(spec, seed=instance, dtype="float64")
    a, b = _point(point_a, "--a"), _point(point_b, "--b")
    if (a is None) != (b is None):
        raise click.UsageError("give both --a and --b, or neither (then --between picks known minima)")
    if a is None:
        minima = landscape.minima
        if len(minima) < 2 or not all(0 <= i < len(minima) for i in between):
            raise click.UsageError(
                f"{landscape.spec} has {len(minima)} known minima (0 to {len(minima) - 1}); "
                f"choose two with --between, or give --a and --b"
            )
        a, b = (minima[i].point for i in between)
    result = connectivity(landscape, a, b, points=points, steps=steps)
    if as_json:
        click.echo(json.dumps({"problem": landscape.spec, "instance": instance, **result.as_dict()}))
        return
    click.echo(f"{landscape.spec}: {result.as_dict()['distance']:.4g} apart")
    for profile in (result.linear, result.bezier):
        click.echo(f"  {profile.kind:<7} barrier {profile.barrier:.6g} (highest at t = {profile.peak_t:.3g})")
    click.echo("\n     t   linear   bezier")
    for i in range(0, len(result.linear.t), max(1, (len(result.linear.t) - 1) // 10)):
        click.echo(f"  {result.linear.t[i]:.2f}  {result.linear.loss[i]:7.4g}  {result.bezier.loss[i]:7.4g}")


# --- critical -----------------------------------------------------------------------------------


@main.command()
@click.argument("spec")
@click.option(
    "--starts",
    default=64,
    show_default=True,
    type=_Whole(),
    help="Start points, from the landscape's start distribution.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=_Whole(),
    help="Run seed of the first start (starts use seed..seed+N-1).",
)
@click.option("--instance", default=0, show_default=True, type=_Whole(), help="Instance seed of a random family.")
@click.option("--max-iter", default=500, show_default=True, type=_Whole(), help="Newton iterations at most per start.")
@click.option(
    "--restarts",
    type=_Whole(),
    default=0,
    show_default=True,
    help="Restart each start that ends gradient-flat from a new seeded start, up to N times.",
)
@click.option(
    "--dense-max-dim",
    type=_Whole(),
    default=512,
    show_default=True,
    help="Largest dim with a dense Hessian; beyond, MINRES and Lanczos on Hessian-vector products (0 forces them).",
)
@click.option(
    "--spectrum",
    type=click.Choice(["auto", "dense", "lanczos"]),
    default="auto",
    show_default=True,
    help="Beyond --dense-max-dim: each point's index and extremes from the dense Hessian or a full Lanczos "
    "tridiagonalisation (auto: dense where it fits, about d <= 2300).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per distinct point, then a summary.")
@_friendly
def critical(
    spec: str,
    starts: int,
    seed: int,
    instance: int,
    max_iter: int,
    restarts: int,
    dense_max_dim: int,
    spectrum: str,
    as_json: bool,
) -> None:
    """Critical points of SPEC of every index, by Newton's method on the gradient from N starts.

    Lists the distinct critical points (value, index, kind, gradient norm, Hessian spectrum's
    extremes, how many starts found each) and, apart, the gradient-flat points where the search
    stopped on a nonzero gradient in the Hessian's near-kernel (Frye et al. 2021): those are not
    critical points. Dense Hessian up to --dense-max-dim, Krylov (MINRES, full Lanczos) beyond.
    """
    from landbench.critical import critical_points

    landscape = make(spec, seed=instance, dtype="float64")
    found = critical_points(
        landscape,
        starts,
        seed=seed,
        max_iter=max_iter,
        restarts=restarts,
        dense_max_dim=dense_max_dim,
        spectrum=spectrum,
    )
    if as_json:
        for record in found.as_records():
            click.echo(json.dumps({**record, "instance": instance}))
        click.echo(json.dumps({"kind": "summary", "instance": instance, **found.summary()}))
        return
    counts = found.counts()
    space = f"on the {found.tangent_dim}-dimensional sphere" if landscape.constrained else f"in d = {found.dim}"
    click.echo(f"{landscape.spec} (instance {instance}): critical points {space} from {counts['starts']} starts")
    header = (
        f"  {'kind':<13} {'value':>12} {'index':>5} {'null':>4} {'|grad|':>9} "
        f"{'lambda_min':>11} {'lambda_max':>11} {'found by':>8}"
    )
    tables = (("critical points", found.points, None), ("gradient-flat points (not critical)", found.gradient_flat, 10))
    for title, points, limit in tables:
        if not points:
            continue
        click.echo(f"\n{title}:\n{header}")
        for point in points[:limit]:
            click.echo(
                f"  {point.kind:<13} {point.value:>12.6g} {point.index:>5} {point.nullity:>4} {point.grad_norm:>9.2e} "
                f"{point.lambda_min:>11.4g} {point.lambda_max:>11.4g} {point.count:>8}"
            )
        if limit is not None and len(points) > limit:
            click.echo(f"  ... and {len(points) - limit} more (--json lists them all)")
    plural = {"minimum": "minima", "saddle": "saddles", "maximum": "maxima"}
    kinds = ", ".join(
        f"{n} {kind if n == 1 else plural[kind]}" for kind, n in found.summary()["unique_by_kind"].items() if n
    )
    click.echo(
        f"\n{counts['converged']} converged to {counts['unique_points']} distinct critical points"
        + (f" ({kinds})" if kinds else "")
        + f", {counts['gradient_flat']} ended gradient-flat, {counts['not_converged']} not converged"
        + (f"; {counts['restarts']} restarts after gradient-flat ends" if counts.get("restarts") else "")
        + f"; {counts['unique_gradient_flat']} distinct gradient-flat points met"
    )


# --- claims -------------------------------------------------------------------------------------


@main.command("claims")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--quick", is_flag=True, help="The quick sizes: every claim together in under 10 minutes on 2 CPU cores.")
@click.option(
    "--tier",
    type=click.Choice(list(TIERS)),
    help="The sizes by name: test (seconds, what landbench's tests run), quick (= --quick), full (default; for a GPU).",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option(
    "--out",
    default="claims",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder of the report and of each claim's stored work (a rerun resumes from it).",
)
@click.option("--progress/--no-progress", default=None, help="Progress bars on stderr (default: on a terminal).")
@click.option("--list", "list_only", is_flag=True, help="List the claims and their experiment files; run nothing.")
@_friendly
def claims_command(
    names: Sequence[str], quick: bool, tier: str | None, device: str, out: str, progress: bool | None, list_only: bool
) -> None:
    """Run the textbook claims as experiments and write OUT/claims.html and OUT/claims.md.

    Each claim (all when no NAME is given) is an experiment file in problems/claims/: the claim as
    the texts state it, the theory curve drawn next to the measurement, and a stated test whose
    verdict (supported, supported with a caveat, not supported, inconclusive) is computed from the
    data. Work is stored in OUT/NAME/ as it is done, so an interrupted run resumes. Exit status 1
    when an experiment failed (the report still covers the others).
    """
    from landbench.claims import Failed, experiments, run_claims, select
    from landbench.landscapes import resolve_device

    if list_only:
        for experiment in select(names) if names else experiments().values():
            click.echo(f"{experiment.number}. {experiment.name:<18} {experiment.title}\n   {experiment.path}")
        return
    if quick and tier not in (None, "quick"):
        raise click.UsageError(f"--quick and --tier {tier} disagree; give one of them")
    chosen_tier = "quick" if quick else tier or "full"
    if resolve_device(device).type == "cpu" and chosen_tier == "full":
        click.echo(
            "landbench claims: the full sizes are meant for a GPU and take hours on a CPU; --quick takes minutes",
            err=True,
        )
    select(names)
    outcomes, pages = run_claims(names, chosen_tier, out, device=device, progress=progress)
    others = len(pages.entries) - len(outcomes)
    kept = f" (with {others} claims kept from the earlier report there)" if others > 0 else ""
    click.echo(f"wrote {pages.html} and {pages.markdown}{kept}")
    titles = [o.title if isinstance(o, Failed) else o.experiment.title for o in outcomes]
    width = max(map(len, titles), default=0)
    for outcome, title in zip(outcomes, titles):
        if isinstance(outcome, Failed):
            click.echo(f"  {outcome.number}. {title:<{width}}  FAILED: {outcome.error}")
        else:
            click.echo(f"  {outcome.experiment.number}. {title:<{width}}  {outcome.verdict}")
    if any(isinstance(o, Failed) for o in outcomes):
        sys.exit(1)


# --- run ----------------------------------------------------------------------------------------


def _seeds(value: str | None) -> list[int] | None:
    """``--seeds 8`` (seeds 0..7) or ``--seeds 0,3,7``; checked like the API's ``seeds``."""
    if value is None:
        return None
    pieces = [v for v in value.split(",") if v.strip()] if "," in value else [value]
    try:
        if not all(_is_whole(piece) for piece in pieces):
            raise ValueError(value)
        # "3" is a count; "3," (or "0,3,7") a list, so that one seed other than 0 can be given
        parsed: int | list[int] = [int(v) for v in pieces] if "," in value else int(value)
    except ValueError:
        raise click.BadParameter(
            f"expected a count (8) or a comma-separated list of run seeds (0,3,7), got {_shown(value)}",
            param_hint="--seeds",
        ) from None
    return normalize_seeds(parsed, where="--seeds")


def _suite_options(command: F) -> F:
    """The options that say which runs a suite plans (``run`` and ``status`` share them)."""
    options = [
        click.option(
            "--problem",
            "problems",
            multiple=True,
            metavar="SPEC",
            help="A problem with its dim; replaces the suite's problems. Repeatable.",
        ),
        click.option(
            "--optimizer",
            "optimizers",
            multiple=True,
            metavar="SPEC",
            help="An optimizer; replaces the suite's optimizers. Repeatable.",
        ),
        click.option(
            "--seeds", metavar="N|LIST", help="Number of run seeds (0..N-1) or a list such as 0,3,7 (one seed: 3,)."
        ),
        click.option("--steps", type=_Whole(min=1), help="Optimizer steps per run."),
        click.option(
            "--noise",
            "noise",
            multiple=True,
            type=float,
            help="Gradient-noise standard deviation (the scale for alpha_stable). Repeatable.",
        ),
        click.option(
            "--noise-model",
            "noise_model",
            multiple=True,
            metavar="MODEL",
            help="The gradient noise's law: gaussian (default), student_t(nu=3), alpha_stable(alpha=1.5), frozen or "
            "frozen(cell=0.01), hessian(scale=1); replaces the suite's. Repeatable.",
        ),
        click.option(
            "--batch-size",
            "batch_size",
            multiple=True,
            metavar="M|full",
            help="On finite-sum families (least_squares, deep_linear, ...): examples per gradient, drawn per run "
            "without replacement within an epoch, or 'full'; replaces the suite's (default: the full batch; "
            "other problems run their full batch). Repeatable.",
        ),
        click.option(
            "--dtype", type=click.Choice(["float32", "float64"]), help="Override the suite's floating-point type."
        ),
        click.option(
            "--tune/--no-tune",
            default=None,
            help="Tune each optimizer's lr per family (and minibatch size) before scoring (default: as the suite says, "
            "i.e. when it has a "
            "[tuning] table; --tune on a suite without one uses the default table), or keep every lr as given.",
        ),
        click.option("--shard", metavar="I/N", help="Run part I of N of the suite (deterministic; for a Slurm array)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _suite(
    suite: str | None,
    problems: Sequence[str],
    optimizers: Sequence[str],
    seeds: str | None,
    steps: int | None,
    noise: Sequence[float],
    dtype: str | None,
    tune: bool | None,
    noise_model: Sequence[str] = (),
    batch_size: Sequence[int | None] | Sequence[str] = (),
) -> Suite:
    """The suite that ``run`` (and ``status``) plans from SUITE and the options that change it."""
    seed_list = _seeds(seeds)
    for model in noise_model:  # before anything is read or run: one line naming the valid models
        check_noise_model(model)
    batch_size = [check_batch_size(size, "--batch-size") for size in batch_size]  # "full" is None
    if suite is None:
        return adhoc_suite(problems, optimizers, seed_list, steps, noise, noise_model, batch_size).with_overrides(
            dtype=dtype, tune=tune
        )
    return load_suite(suite).with_overrides(
        problems=problems,
        optimizers=optimizers,
        seeds=seed_list,
        steps=steps,
        noise=noise,
        dtype=dtype,
        tune=tune,
        noise_model=noise_model,
        batch_size=batch_size,
    )


def _threads_option(command: F) -> F:
    """``--threads N``: the intra-op threads of every batch (checked by landbench.threads)."""
    return click.option(
        "--threads",
        metavar="N",
        help=f"Intra-op threads of every batch (default: ${ENV}, else 1 below 2**20 runs x dim, "
        "the process's threads above, less one when they would take every CPU).",
    )(command)


@main.command()
@click.argument("suite", required=False)
@_suite_options
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option(
    "--out",
    default=DEFAULT_OUT,
    show_default=True,
    type=click.Path(file_okay=False),
    help="Results folder (JSONL); runs already there are skipped.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON record per run per line on stdout.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: on a terminal).")
@click.option(
    "--executor",
    type=click.Choice(list(EXECUTORS)),
    default="serial",
    show_default=True,
    help="Where jobs run: this process, a local pool of worker processes, or a Ray cluster.",
)
@click.option(
    "--workers",
    type=_Whole(1, MAX_WORKERS),
    help="Worker processes of --executor processes (default: one per visible GPU, or per core on the CPU).",
)
@click.option(
    "--address",
    help="The Ray cluster of --executor ray: host:6379, auto or ray://host:10001 (default: $RAY_ADDRESS, else a "
    "local Ray for the sweep).",
)
@click.option("--retry-failed", is_flag=True, help="Run again the runs whose jobs failed in an earlier sweep.")
@_threads_option
@_friendly
def run(
    suite: str | None,
    problems: Sequence[str],
    optimizers: Sequence[str],
    seeds: str | None,
    steps: int | None,
    noise: Sequence[float],
    noise_model: Sequence[str],
    batch_size: Sequence[str],
    device: str,
    dtype: str | None,
    out: str,
    as_json: bool,
    progress: bool | None,
    tune: bool | None,
    executor: str,
    workers: int | None,
    address: str | None,
    shard: str | None,
    retry_failed: bool,
    threads: str | None,
) -> None:
    """Run SUITE (a shipped suite's name or a .toml file), or the --problem and --optimizer given.

    Results are appended to OUT/results.jsonl as each batch finishes; running the same thing into
    the same folder again skips the runs that are there, so an interrupted sweep resumes. A suite
    with a [tuning] table (such as baselines) tunes each optimizer's lr per family (and minibatch
    size) first, replacing
    the lr of its spec; --no-tune keeps every spec as given. Which one happens is said on stderr.
    """
    if not out.strip():
        raise click.BadParameter("expected a folder name, got an empty one", param_hint="--out")
    count = requested_threads(None if threads is None else check_threads(threads, "--threads"))
    part = Shard.parse(shard) if shard is not None else None
    plan = _suite(suite, problems, optimizers, seeds, steps, noise, dtype, tune, noise_model, batch_size)
    if not plan.scenarios():
        where = f"{plan.path}" if plan.path else f"suite {plan.name!r}"
        raise click.UsageError(f"{where} has no scenario to run: give it [[problems]] and optimizers")
    mine = shard_scenarios(plan, part)
    if not mine:  # a Slurm array larger than the suite: nothing to do is not an error
        click.echo(f"landbench: shard {part} of {plan.name} has no scenarios: nothing to run", err=True)
        return
    check_suite(plan, device)  # every error before anything is said or written
    for entry in tuning_plan(plan.tuning, [sc.optimizer for sc in mine]):
        click.echo(_tuning_line(entry), err=True)
    emit = (lambda record: click.echo(json.dumps(record))) if as_json else None
    try:
        result = run_suite(
            plan,
            out,
            device=device,
            progress=progress,
            on_record=emit,
            executor=executor,
            workers=workers,
            address=address,
            shard=part,
            retry_failed=retry_failed,
            check=False,
            threads=count,
        )
    except KeyboardInterrupt:
        click.echo(
            f"\nInterrupted. Finished jobs are kept in {out}/results.jsonl; run the same command again to resume.",
            err=True,
        )
        sys.exit(130)
    if not as_json:
        ran, _ = split_failed(result.records)
        click.echo(summary_table(ran))
        tuned = f" (and {result.tuned} tuning runs)" if result.tuned else ""
        click.echo(f"\n{result.ran} runs ran{tuned}, {result.skipped} were already in {out}/results.jsonl")
    unscored = sum(len(sc.seeds) for sc, _ in result.untuned)
    if result.failed or unscored:
        what = [f"{len(result.failed)} runs failed"] if result.failed else []
        what += [f"{unscored} runs could not be scored (their tuning failed)"] if unscored else []
        click.echo(
            f"landbench: {' and '.join(what)}: landbench status {out} lists them; --retry-failed runs them again",
            err=True,
        )
        sys.exit(1)


def _tuning_line(entry: PlanEntry) -> str:
    """What ``landbench run`` does with one optimizer's lr, in one line."""
    if entry.action == "none":
        return f"no lr to tune: {entry.optimizer} runs as given"
    if entry.action == "keep":
        return f"lr kept as given: {entry.optimizer}"
    line = f"tuning lr of {entry.label} per family over {entry.grid}"
    if entry.learning_rate_free:
        line += " (learning-rate-free: lr is a multiplier)"
    if entry.explicit_lr:
        line += f" (pass --no-tune to keep lr={entry.lr:g})"
    return line


# --- rank ---------------------------------------------------------------------------------------

_against_option = click.option(
    "--against",
    multiple=True,
    metavar="NAME|PATH",
    help="Reference results to take with RESULTS: a shipped set (e.g. 'baselines') or a results folder or file.",
)


def _results_and_references(results: Sequence[str], against: Sequence[str], verb: str) -> list[dict[str, Any]]:
    """The records of RESULTS and of the --against references; RESULTS, when given, must hold scored runs."""
    if not results and not against:
        raise click.UsageError(
            f"give results to {verb} (folders or .jsonl files) and/or --against a reference set "
            f"(shipped: {', '.join(available_references())})"
        )
    records, failed = split_failed(load_results(results))
    if failed:
        click.echo(
            f"landbench: left out {len(failed)} failed runs of {', '.join(results)} "
            f"(landbench status {' '.join(results)} lists them)",
            err=True,
        )
    if results:
        _require_scored(records, ", ".join(results), verb)
    for reference in against:
        references = load_reference(reference)
        _require_scored(references, f"the reference set {reference}", verb)
        records += references
    return records


def _require_scored(records: Sequence[dict[str, Any]], where: str, verb: str) -> None:
    """Refuse results with no scored run that this landbench reads (phase 'score', its record schema)."""
    from landbench.outcomes import RECORD_SCHEMA, schema_of

    scored = [r for r in records if r.get("phase", "score") == "score"]
    if not scored:
        raise LandbenchError(
            f"no scored runs in {where} ({len(records)} records, none of phase 'score'), so no scored runs to "
            f"{verb}: run a suite into it first, e.g. landbench run baselines --optimizer SPEC --out DIR"
        )
    schemas = sorted({schema_of(r) for r in scored})
    if RECORD_SCHEMA not in schemas:
        newer = all(schema > RECORD_SCHEMA for schema in schemas)
        raise LandbenchError(
            f"the {len(scored)} scored runs in {where} are of record schema {', '.join(map(str, schemas))}, and this "
            f"landbench reads schema {RECORD_SCHEMA}: "
            + (
                "upgrade landbench to read them"
                if newer
                else "their successes counted a target touched once; run them again with this landbench "
                "(the same command into a new folder)"
            )
        )


@main.command("rank")
@click.argument("results", nargs=-1)
@_against_option
@click.option("--json", "as_json", is_flag=True, help="Print the leaderboard as JSON.")
@click.option("--markdown", is_flag=True, help="Print the leaderboard as Markdown.")
@click.option("--alpha", default=0.05, show_default=True, help="Significance level of the paired tests (Holm).")
@click.option("--tau-max", default=4.0, show_default=True, help="Profile ratio up to which the score integrates.")
@click.option(
    "--bootstrap",
    default=2000,
    show_default=True,
    type=_Whole(),
    help="Bootstrap resamples of the mean-rank intervals.",
)
@click.option("--seed", default=0, show_default=True, type=_Whole(), help="Seed of the bootstrap.")
@click.option(
    "--objective",
    type=click.Choice(["train", "test"]),
    default="train",
    show_default=True,
    help="Rank by the training loss (targets, times, final gap) or, on finite-sum families, by the median test "
    "(population) loss at the last iterate.",
)
@_friendly
def rank_command(
    results: Sequence[str],
    against: Sequence[str],
    as_json: bool,
    markdown: bool,
    alpha: float,
    tau_max: float,
    bootstrap: int,
    seed: int,
    objective: str,
) -> None:
    """Rank the optimizers in RESULTS (results folders or .jsonl files) on the scenarios they share.

    Per scenario: COCO's expected running time with success rates (diverged runs are failures);
    overall: mean rank with a bootstrap interval, the area under the performance profile, pairwise
    Wilcoxon tests with Holm's correction, and a breakdown per family group. Tuning-phase records
    are left out. Results that mix devices, versions or settings are ranked with a warning.
    """
    if as_json and markdown:
        raise click.UsageError("give --json or --markdown, not both")
    records = _results_and_references(results, against, "rank")
    board = rank(records, alpha=alpha, tau_max=tau_max, bootstrap=bootstrap, seed=seed, objective=objective)
    if as_json:
        click.echo(json.dumps(board.as_dict(), indent=2, allow_nan=False))
    elif markdown:
        click.echo(board.to_markdown())
    else:
        click.echo(board.to_text())


# --- status -------------------------------------------------------------------------------------


@main.command("status")
@click.argument("results")
@click.argument("suite", required=False)
@_suite_options
@click.option("--device", default="cpu", show_default=True, help="The device the suite runs on (keys hold its type).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@_friendly
def status_command(
    results: str,
    suite: str | None,
    problems: Sequence[str],
    optimizers: Sequence[str],
    seeds: str | None,
    steps: int | None,
    noise: Sequence[float],
    noise_model: Sequence[str],
    batch_size: Sequence[str],
    dtype: str | None,
    tune: bool | None,
    shard: str | None,
    device: str,
    as_json: bool,
) -> None:
    """How much of a sweep in RESULTS is done, failed or missing, per phase and per optimizer.

    With SUITE (a shipped suite's name or a .toml file) or --problem and --optimizer, and the same
    options as the `landbench run` that wrote RESULTS, the runs it plans are counted as done, failed
    or missing; without, the records of RESULTS are counted as they are. Failed jobs are listed with
    the exception's last line. Exit status 0 when nothing is missing or failed, else 1.
    """
    from landbench.status import folder_status, suite_status

    records = load_results([results])
    if suite is None and not problems:
        if optimizers or seeds or steps or noise or noise_model or batch_size or dtype or tune is not None or shard:
            raise click.UsageError("options that change a suite need a SUITE (or --problem and --optimizer)")
        if not records:
            raise LandbenchError(f"no results in {results}: give the folder that landbench run --out wrote")
        report = folder_status(records)
    else:
        plan = _suite(suite, problems, optimizers, seeds, steps, noise, dtype, tune, noise_model, batch_size)
        report = suite_status(plan, records, device, Shard.parse(shard) if shard else None)
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.to_text())
    if not report.complete or report.failures:
        sys.exit(1)


# --- bench --------------------------------------------------------------------------------------


@main.command("bench")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option(
    "--quick",
    is_flag=True,
    help="A tenth of the steps at each size, at least 5. The metrics at the end cost the same, so "
    "'run, metrics' is larger than in the full table.",
)
@click.option("--repeats", default=3, show_default=True, type=_Whole(1, 100), help="Timings per median.")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON.")
@_threads_option
@_friendly
def bench_command(device: str, quick: bool, repeats: int, as_json: bool, threads: str | None) -> None:
    """Time landbench against a hand-written batched loop and a naive per-run loop, on this machine.

    For SGD and Adam on the saddle family at 256 x 10 (1000 steps), 256 x 1000 (200), 64 x 10^4
    (100) and 2 x 10^6 (20): the hand loop's seconds, landbench.run without and with its default
    metrics as ratios to it, the naive per-run loop (autograd, torch.optim, one run at a time) as a
    ratio to landbench.run, the throughput, and the share of the measured copy bandwidth. Medians
    of --repeats timings, taken in turn, side by side in one process; every way at a size runs on
    the threads landbench chooses for it (or --threads).
    """
    import torch

    from landbench.bench import QUICK_SIZES, SIZES, measure, table
    from landbench.threads import available_cores

    count = requested_threads(None if threads is None else check_threads(threads, "--threads"))
    if (crowded := oversubscription(count)) is not None:
        click.echo(f"landbench: {crowded}", err=True)
    rows = measure(
        QUICK_SIZES if quick else SIZES,
        device=device,
        repeats=repeats,
        threads=count,
        progress=lambda what: click.echo(f"timing {what}", err=True),
    )
    if as_json:
        about = {
            "device": device,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["landbench", *sys.argv[1:]]),
            "cores": available_cores(),
            "quick": quick,
            "repeats": repeats,
            "torch": torch.__version__,
            "landbench": __version__,
        }
        click.echo(json.dumps({**about, "rows": [r.as_dict() for r in rows]}, indent=2))
    else:
        click.echo(table(rows))
        if quick:
            click.echo("(--quick: a tenth of the steps, the metrics as many: 'run, metrics' is not the full table's)")


# --- report and plot ----------------------------------------------------------------------------


@main.command("report")
@click.argument("results", nargs=-1)
@_against_option
@click.option(
    "--out",
    default="landbench_report",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for index.html, report.md and figures/.",
)
@click.option("--title", default="landbench report", show_default=True, help="Title of the report.")
@_friendly
def report_command(results: Sequence[str], against: Sequence[str], out: str, title: str) -> None:
    """Write a report of RESULTS (results folders or .jsonl files): the leaderboard and figures.

    OUT/index.html (self-contained, images in OUT/figures/) and OUT/report.md hold the leaderboard
    of `landbench rank` and the figures the records allow: escape time against dimension and
    saddle index, ECDFs of time to target, performance profiles, final loss gap and basin width
    distributions, sharpness against final loss, and the wide-basin share against dimension and
    noise. Needs matplotlib (pip install 'landbench[plot]').
    """
    from landbench.report import write_report

    records = _results_and_references(results, against, "report")
    written = write_report(records, out, title=title)
    click.echo(f"wrote {written.html} and {written.markdown} with {len(written.figures)} figures")
    for name, why in written.skipped.items():
        click.echo(f"  not drawn: {name}: {why}")


@main.command("plot")
@click.argument("spec")
@click.option(
    "--optimizer",
    "optimizers",
    multiple=True,
    required=True,
    metavar="SPEC",
    help="An optimizer whose trajectories to draw. Repeatable.",
)
@click.option("--seeds", default="3", show_default=True, metavar="N|LIST", help="Run seeds: a count or a list.")
@click.option("--steps", default=300, show_default=True, type=_Whole(min=1), help="Optimizer steps per run.")
@click.option("--instance", default=0, show_default=True, type=_Whole(min=0), help="Instance seed.")
@click.option("--noise", default=0.0, show_default=True, type=float, help="Gradient-noise standard deviation.")
@click.option("--noise-model", default="gaussian", show_default=True, metavar="MODEL", help="The gradient noise's law.")
@click.option(
    "--batch-size", "batch_size", default=None, metavar="M|full", help="Examples per gradient on a finite sum."
)
@click.option(
    "--out", default="landbench_plot.png", show_default=True, type=click.Path(dir_okay=False), help="PNG file."
)
@_friendly
def plot_command(
    spec: str,
    optimizers: Sequence[str],
    seeds: str,
    steps: int,
    instance: int,
    noise: float,
    noise_model: str,
    batch_size: str | None,
    out: str,
) -> None:
    """Draw SPEC (a problem with its dim) with each optimizer's trajectories.

    In 2-D the landscape itself; above, the slice through its known structure (the saddle and the
    line to its minimum, or the line between two known minima) completed by the top principal
    directions of the iterates (Li et al. 2018), with the iterates projected onto it. Needs
    matplotlib (pip install 'landbench[plot]').
    """
    from landbench.report.landscape import plot_landscape

    seed_list = _seeds(seeds)
    if noise < 0 or not math.isfinite(noise):
        raise click.BadParameter(f"expected a finite number >= 0, got {noise}", param_hint="--noise")
    if not out.lower().endswith(".png"):
        raise click.BadParameter(f"expected a .png file name, got {out!r}", param_hint="--out")
    check_noise_model(noise_model)
    size = effective_batch_size(str(parse_spec(spec, what="problem")), check_batch_size(batch_size, "--batch-size"))
    _, runs, plane = plot_landscape(
        spec,
        optimizers,
        seeds=seed_list,
        steps=steps,
        instance=instance,
        noise=noise,
        out=out,
        noise_model=noise_model,
        batch_size=size,
    )
    click.echo(f"wrote {out}" + (f": {plane.description}" if plane.description else ""))
    for run in runs:
        diverged = sum(d is not None for d in run.diverged)
        if diverged:
            click.echo(f"  {run.optimizer}: {diverged}/{len(run.seeds)} runs diverged")


def summary_table(records: Sequence[dict[str, Any]]) -> str:
    """A plain-text table: one row per scenario, from :func:`landbench.outcomes.summarize` (the summary
    every view shows): runs, diverged runs, median final loss and gap and sharpness (diverged runs
    ranked worst: ``-`` when the median falls on one), escaped runs (a run that diverged escaped
    nothing) and the median escape step (``>T`` when at least half the runs did not escape within
    the T steps), on finite sums the median test loss and generalization gap, and where the runs
    ended (the family's own fields).
    """
    from landbench.outcomes import batch_size_of, is_finite_sum_record, noise_model_of, noise_text, summarize

    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in records:
        noise = noise_text(r["noise"], noise_model_of(r), batch_size_of(r))
        key = (r["problem"], r["optimizer"], noise, r["instance"], r["steps"], r["dtype"])
        groups.setdefault(key, []).append(r)
    header = ("problem", "optimizer", "noise", "inst", "steps", "dtype", "runs", "div", "final loss", "loss gap")
    header += ("escaped", "esc. step", "sharpness")
    tested = any(is_finite_sum_record(r) for r in records)  # finite sums: the median test loss and gap too
    header += ("test loss", "gen. gap", "ended in") if tested else ("ended in",)
    rows = [header]
    for (problem, optimizer, noise, instance, steps, dtype), runs in groups.items():
        summary = summarize(runs)
        escapes = summary.escapes
        generalization = (
            (_number(summary.median_test_loss), _number(summary.median_generalization_gap)) if tested else ()
        )
        rows.append(
            (
                problem,
                optimizer,
                noise,
                str(instance),
                str(steps),
                dtype.removeprefix("float"),
                str(summary.runs),
                str(summary.diverged),
                _number(summary.median_final_loss),
                _number(summary.median_loss_gap),
                "-" if escapes is None else f"{escapes.escaped}/{summary.runs}",
                "-" if escapes is None else _number(escapes.median, f">{steps}"),
                _number(summary.median_sharpness),
                *generalization,
                ", ".join(text for text in summary.family_text.values() if text) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _number(value: float | None, missing: str = "-") -> str:
    return missing if value is None else f"{value:.4g}"


if __name__ == "__main__":  # pragma: no cover
    main()
