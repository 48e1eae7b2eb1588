"""A seeded fuzz of bad input: a few hundred generated problem and optimizer specs and suite files.

Every one is bad by construction (truncated, of the wrong type, huge, non-finite, unicode look-alikes,
nested calls, code, attribute access, lambdas, f-strings, unknown names, negative dims, duplicate
arguments, ...; suite files of the wrong encoding, syntax or types). Each must end in a landbench error
when given to ``landbench run`` (exit 2, one ``Error:`` line on stderr, no traceback, nothing written)
and no spec may run code: the specs that would create a marker file if evaluated leave none.

The CLI is called in-process (``CliRunner``) with ``--steps 1 --seeds 1``; every input fails while it is
parsed or checked (:mod:`landbench.preflight`), before any job runs, so the whole file takes seconds.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import landbench.api
from landbench.cli import main
from landbench.errors import LandbenchError

SEED = 11
GOOD_PROBLEM = "saddle(dim=3)"
GOOD_OPTIMIZER = "sgd(lr=0.1)"
VALID_PROBLEMS = [
    "saddle(dim=10, index=2, gamma=1.5)",
    "pspin(dim=20, p=3)",
    "rosenbrock(dim=4)",
    "valley(dim=3, modes=4)",
]
VALID_OPTIMIZERS = ["adam(lr=0.01, betas=(0.9, 0.99))", "sgd(lr=0.1, momentum=0.9)", "lbfgs(lr=1.0, max_iter=5)"]


def code_payloads(marker: Path) -> list[str]:
    """Expressions that would create ``marker`` if a spec's values were evaluated."""
    m = str(marker)
    return [
        f"__import__('os').system('touch {m}')",
        f"open('{m}', 'w')",
        f"open({m!r}, 'w').close()",
        f"exec(\"open('{m}', 'w')\")",
        f"eval(\"open('{m}', 'w')\")",
        f"(lambda: open('{m}', 'w'))()",
        f"[open('{m}', 'w') for _ in range(1)]",
        f"f\"{{open('{m}', 'w')}}\"",
        f"().__class__.__base__.__subclasses__()[0]('{m}')",
        f"(x := open('{m}', 'w'))",
        f"__builtins__['open']('{m}', 'w')",
        f"globals()['__builtins__'].open('{m}', 'w')",
        f"{{'a': open('{m}', 'w')}}",
        f"(open('{m}', 'w'),)",
        f"-open('{m}', 'w')",
        f"1 if open('{m}', 'w') else 2",
        f"__import__('pathlib').Path('{m}').touch()",
    ]


def bad_values(rng: random.Random) -> list[str]:
    """Values of the wrong kind for any numeric or boolean argument."""
    digits = "9" * rng.randint(310, 320)
    return [
        "'ten'",
        "None",
        "[3]",
        "(3,)",
        "{'a': 1}",
        "{3}",
        "b'3'",
        "1j",
        "inf",
        "-inf",
        "nan",
        "float('nan')",
        "1e999",
        "-1e999",
        digits + ".0",
        "...",
        "'\u202e3'",
        "'3\x00'",
    ]


def bad_problems(rng: random.Random, marker: Path) -> Iterator[str]:
    for valid in VALID_PROBLEMS:  # truncated
        for cut in sorted(rng.sample(range(1, len(valid)), 4)):
            yield valid[:cut]
    for value in bad_values(rng):  # the wrong kind, non-finite, overflowing
        yield f"saddle(dim={value})"
        yield f"saddle(dim=3, gamma={value})"
    yield from (f"rosenbrock(dim={rng.choice(['3.5', 'True', '-1', '0', '-10**3', '2**64'])})" for _ in range(6))
    yield from (f"saddle(dim=3, rotate={v})" for v in ("'yes'", "1", "0", "'False'", "None"))
    for exponent in (13, 15, 18, 19, 25, 40):  # huge sizes: refused by the memory estimate (or the int64 range)
        yield f"quadratic(dim=1{'0' * exponent})"
    yield from ("pspin(dim=5000, p=4)", "pspin(dim=3000, p=3, storage='dense')", "gaussian_field(dim=10000000)")
    yield from ("saddle(dim=100000000, index=100000000, rotate=True)", "pspin(dim=3, p=9)", "pspin(dim=10, mix={5: 1})")
    yield "saddle(dim=3, index=4)"
    for payload in code_payloads(marker):
        yield f"saddle(dim={payload})"
        yield f"saddle(dim=3, gamma={payload})"
    yield from (
        "saddle(dim=saddle(dim=3))",  # nested calls, attribute access, unknown names
        "saddle(dim=int(3))",
        "saddle(dim=math.pi)",
        "saddle(dim=dim)",
        "saddle.dim(dim=3)",
        "saddle(dim=3).loss",
        "saddle(dim=3)(dim=4)",
        "saddle(dim=3, dim=4)",
        "saddle(3)",
        "saddle(*[3])",
        "saddle(**{'dim': 3})",
        "saddle(dim=3,, index=1)",
        "saddle(dim=3; index=1)",
        "saddle(dim=3) # comment",
        "saddle(dim=3)\nimport os",
        "saddle(dim=3); import os",
        "saddle(dim=3)[0]",
        "saddle(dim=3, index=1, nope=2)",
        "saddle(Dim=3)",
        "saddle(dim=3, init='far away')",
        "",
        " ",
        "()",
        "(dim=3)",
        "3(dim=3)",
        "os:system(dim=3)",
        "torch.optim:SGD(dim=3)",
        "landbench:make(dim=3)",
    )
    for _ in range(12):  # unknown family names
        yield "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(1, 12))) + "(dim=3)"
    yield from (  # unicode look-alikes, invisible and wide characters
        "s\u0430ddle(dim=3)",
        "saddle\u200b(dim=3)",
        "saddle(dim=\uff13)",
        "saddle(d\u0131m=3)",
        "saddle(dim=3\u00a0)",
        "\U0001f600(dim=3)",
        "saddle(dim='\U0001f600')",
        "sa\u0301ddle(dim=3)",
        "\u202esaddle(dim=3)",
        "saddle(dim=\u0663)",
    )


def bad_optimizers(rng: random.Random, marker: Path) -> Iterator[str]:
    for valid in VALID_OPTIMIZERS:
        for cut in sorted(rng.sample(range(1, len(valid)), 3)):
            if valid[:cut] not in ("adam", "sgd", "lbfgs"):  # a bare name is a valid spec
                yield valid[:cut]
    for value in bad_values(rng):
        yield f"sgd(lr={value})"
        yield f"adam(lr=0.01, eps={value})"
        yield f"sgd(lr=0.1, nesterov={value})"
    yield from (
        "adam(betas=(0.9,))",
        "adam(betas=(0.9, 0.99, 0.999))",
        "adam(betas=0.9)",
        "adam(betas=('a', 'b'))",
        "adam(betas=(0.9, inf))",
        "adam(betas=(1.5, 0.9))",
        "adam(amsgrad='yes')",
        "adam(amsgrad=1)",
        "sgd(lr=0.1, nesterov='yes')",
        "sgd(lr=0.1, momentum='0.9')",
        "sgd(lr=0.1, momentum=True)",
        "sgd(lr=0.1, weight_decay=inf)",
        "sgd(lr=0.1, weight_decay=-1)",
        "sgd(lr=0.1, momentum=0.9, dampening=1)",
        "sgd(lr=0.1, maximize=True)",
        "sgd(lr=0)",
        "sgd(lr=-0.1)",
        "sgd(lr=1" + "0" * 400 + ")",
        "lbfgs(max_iter=0)",
        "lbfgs(max_iter=-3)",
        "lbfgs(max_iter=2.5)",
        "lbfgs(history_size=0)",
        "lbfgs(max_eval=0)",
        "lbfgs(line_search_fn='armijo')",
        "lbfgs(tolerance_grad=-1)",
        "rprop(step_sizes=(50, 1e-6))",
        "rprop(etas=(0.5,))",
        "asgd(t0=-1)",
        "rmsprop(alpha=-1)",
        "adagrad(lr_decay=-1)",
        "sam(lr=0.1, base='adm')",
        "sam(lr=0.1, rho=-1)",
        "sgd(lr=0.1, lr=0.2)",
        "sgd(0.1)",
        "sgd(lr=0.1, momentm=0.9)",
        "sgd(lr=0.1, foreach='maybe')",
        "adamm(lr=0.1)",
        "torch.optim:Nope(lr=0.1)",
        "torch.optim:Optimizer(lr=0.1)",
        "torch.optim.lr_scheduler:StepLR",
        "torch.nn:Linear",
        "collections:OrderedDict",
        "builtins:print",
        "builtins:object",
        "os:system",
        "math:pi",
        "os:path.join",
        "no_such_package_xyz:Opt",
        ":Opt",
        "torch.optim:",
        "torch..optim:SGD",
        "torch.optim:SGD:SGD",
        "torch.optim:SparseAdam(lr=0.1)",
    )
    for payload in code_payloads(marker):
        yield f"sgd(lr={payload})"
        yield f"adam(lr=0.01, betas={payload})"
    for _ in range(8):
        yield "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) + "(lr=0.1)"
    yield from ("\u0455gd(lr=0.1)", "sgd(lr=0.1\u200b)", "sgd(lr=\uff10.1)", "ad\u0430m", "sgd(lr='\U0001f600')")


TOML_KEYS_BAD = [
    "name = 3",
    "name = [1]",
    "description = {a = 1}",
    "seeds = 'a'",
    "seeds = -1",
    "seeds = 0",
    "seeds = [1, 1]",
    "seeds = [-1]",
    "seeds = [1.5]",
    "seeds = 10000000000",
    "instances = 0",
    "instances = [true]",
    "steps = 'x'",
    "steps = 0",
    "steps = 1.5",
    "steps = -5",
    "steps = 100000000000000",
    "steps = true",
    "noise = 'x'",
    "noise = -1",
    "noise = nan",
    "noise = inf",
    "noise = []",
    "noise = [0.1, 'a']",
    "dtype = 'float16'",
    "dtype = 3",
    "optimizers = 'sgd'",
    "optimizers = [1]",
    "optimizers = []",
    "optimizers = [['sgd']]",
    "metrics = 3",
    "tuning = 3",
    "problems = 'x'",
    "problems = [1]",
    "nope = 1",
    "'a\\nb' = 1",
]
TOML_METRICS_BAD = [
    "tau = 'x'",
    "tau = -1",
    "tau = inf",
    "targets = []",
    "targets = [0]",
    "targets = [nan]",
    "targets = 'x'",
    "curvature = 'yes'",
    "lanczos_iterations = 0",
    "lanczos_iterations = 100000",
    "curve_points = 1",
    "dtype = 'float64'",
    "tua = 1",
]
TOML_PROBLEM_BAD = [
    "spec = 3",
    "spec = ''",
    "dims = [3.5]",
    "dims = [0]",
    "dims = [-1]",
    "dims = []",
    "dims = 'three'",
    "dims = [1000000000000000]",
    "seeds = [1, 1]",
    "steps = 0",
    "noise = -1",
    "dtype = 'half'",
    "optimizers = []",
    "optimizers = ['sgd(lr=0)']",
    "nope = 1",
]
TOML_TUNING_BAD = [
    "seeds = []",
    "seeds = 3",
    "instances = [0]",
    "grid = []",
    "grid = [0]",
    "grid = [-1, 1]",
    "grid = 'x'",
    "grid = {relative = []}",
    "grid = {absolute = [1]}",
    "nope = 1",
]


def suite_text(top: str = "", metrics: str = "", problem: str = "", tuning: str = "", spec: str = "saddle") -> str:
    lines = ["steps = 1", "seeds = 1", "optimizers = ['sgd(lr=0.1)']"]
    lines = [line for line in lines if not top or line.split(" =")[0] != top.split(" =")[0]] + ([top] if top else [])
    text = "\n".join(lines) + "\n"
    if metrics:
        text += f"[metrics]\n{metrics}\n"
    if tuning:
        text += f"[tuning]\n{tuning}\n"
    entry = [f"spec = '{spec}'", "dims = [3]"]
    key = problem.split(" =")[0]
    entry = [line for line in entry if not problem or line.split(" =")[0] != key] + ([problem] if problem else [])
    return text + "[[problems]]\n" + "\n".join(entry) + "\n"


def bad_suites(rng: random.Random, marker: Path) -> Iterator[bytes]:
    good = suite_text()
    for line in TOML_KEYS_BAD:
        yield suite_text(top=line).encode()
    for line in TOML_METRICS_BAD:
        yield suite_text(metrics=line).encode()
    for line in TOML_PROBLEM_BAD:
        yield suite_text(problem=line).encode()
    for line in TOML_TUNING_BAD:
        yield suite_text(tuning=line).encode()
    for spec in [s for s in bad_problems(rng, marker) if "'" not in s and "\n" not in s and "\\" not in s][:40]:
        if "dim" not in spec:  # the suite's dims = [3] give it one: keep specs that stay bad with it
            continue
        yield good.replace("spec = 'saddle'\ndims = [3]", f"spec = '{spec}'").encode()
    for cut in sorted(rng.sample(range(1, len(good) - 1), 12)):  # truncated files
        text = good[:cut]
        if text.rstrip().endswith(("]", "= 1", "'")) and "[[problems]]" in text and "dims" in text:
            continue  # a truncation that is still a whole, valid file
        yield text.encode()
    yield from (
        b"",
        b"# only a comment\n",
        good.encode("utf-16"),
        good.encode("utf-32"),
        b"\xfe\xff" + good.encode("utf-16-be"),
        good.replace("saddle", "sadd\xe9").encode("latin-1"),
        good.encode() + b"\n# \xff\xfe broken\n",
        b"\xc3\x28" + good.encode(),
        good.encode().replace(b"steps = 1", b"steps = 1\nsteps = 2"),
        good.encode().replace(b"[[problems]]", b"[[problems]"),
        good.encode().replace(b"dims = [3]", b"dims = [3"),
        good.encode().replace(b"dims = [3]", b"dims = [3,,]"),
        good.encode().replace(b"'sgd(lr=0.1)'", b"'sgd(lr=0.1)"),
        good.encode().replace(b"'sgd(lr=0.1)'", b'"sgd(\\q)"'),
        good.encode() + b"[[problems]]\n",
        good.encode() + b"garbage garbage\n",
        good.encode().replace(b"saddle", f"saddle(dim={code_payloads(marker)[0]})".encode().replace(b"'", b'"')),
    )


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def cases(root: Path) -> Iterator[tuple[str, list[str]]]:
    rng = random.Random(SEED)
    marker = root / "MARKER"
    for spec in bad_problems(rng, marker):
        yield f"problem {spec!r}", ["--problem", spec, "--optimizer", GOOD_OPTIMIZER]
    for spec in bad_optimizers(rng, marker):
        yield f"optimizer {spec!r}", ["--problem", GOOD_PROBLEM, "--optimizer", spec]
    for i, content in enumerate(bad_suites(rng, marker)):
        path = root / "suites" / f"bad{i}.toml"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        yield f"suite {content[:200]!r}", [str(path)]


def test_every_bad_input_ends_in_one_clear_error_and_runs_no_code(fuzz_root: Path) -> None:
    runner = CliRunner()
    failures, count = [], 0
    for what, args in cases(fuzz_root):
        count += 1
        out = fuzz_root / "out" / str(count)
        result = runner.invoke(main, ["run", *args, "--steps", "1", "--seeds", "1", "--no-progress", "--out", str(out)])
        lines = result.stderr.strip().splitlines()
        ok = (
            result.exit_code == 2
            and len(lines) == 1
            and lines[0].startswith("Error: ")
            and "Traceback" not in result.output
            and not out.exists()
        )
        if not ok:
            failures.append(f"{what}: exit {result.exit_code}, {result.output[-300:]!r}, {result.exception!r}")
    assert count >= 300
    assert not (fuzz_root / "MARKER").exists(), "a spec string was evaluated"
    assert not failures, f"{len(failures)} of {count} bad inputs did not end in one clear error:\n" + "\n".join(
        failures
    )


def test_the_same_specs_through_the_api_end_in_a_landbench_error(fuzz_root: Path) -> None:
    """``landbench.api.plan`` (what ``landbench.run`` calls first) refuses every bad spec with a
    LandbenchError, strings the command line cannot carry (lone surrogates) included."""
    rng = random.Random(SEED + 1)
    marker = fuzz_root / "API_MARKER"
    pairs = [(spec, GOOD_OPTIMIZER) for spec in bad_problems(rng, marker)]
    pairs += [(GOOD_PROBLEM, spec) for spec in bad_optimizers(rng, marker)]
    pairs += [
        ("saddle(dim='\ud800')", GOOD_OPTIMIZER),
        (GOOD_PROBLEM, "sgd(lr='\udcff')"),
        ("\ud800(dim=3)", GOOD_OPTIMIZER),
    ]
    pairs += [({"name": "saddle", "dim": value}, GOOD_OPTIMIZER) for value in (object(), 3j, float("nan"), "3", [3])]
    pairs += [(GOOD_PROBLEM, {"name": "sgd", "lr": value}) for value in (object(), 3j, float("inf"), "0.1", None)]
    wrong = []
    for problem, optimizer in pairs:
        try:
            landbench.api.plan(problem, optimizer, seeds=1, steps=1)
        except LandbenchError as exc:
            if "\n" in str(exc):
                wrong.append(f"{problem!r} {optimizer!r}: a message of several lines: {exc}")
        except BaseException as exc:  # noqa: BLE001 - what the test is looking for
            wrong.append(f"{problem!r} {optimizer!r}: {type(exc).__name__}: {exc}")
        else:
            wrong.append(f"{problem!r} {optimizer!r}: accepted")
    assert not marker.exists(), "a spec string was evaluated"
    assert not wrong, "\n".join(wrong)


def test_the_generator_is_deterministic(tmp_path: Path) -> None:
    first = [args for _, args in cases(tmp_path / "a")] if (tmp_path / "a").mkdir() is None else []
    second = [args for _, args in cases(tmp_path / "b")] if (tmp_path / "b").mkdir() is None else []
    strip = [[a.replace(str(tmp_path / "a"), "") for a in args] for args in first]
    assert strip == [[a.replace(str(tmp_path / "b"), "") for a in args] for args in second]
