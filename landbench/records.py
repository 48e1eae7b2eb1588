"""One record (a JSON-ready dict) per run, and the key that identifies a run for resuming.

Fields (all JSON; null where a value does not apply, was censored, or the run diverged). What each
outcome means, and what a diverged or censored run holds in it, is defined in
:mod:`landbench.outcomes` (its ``FIELDS`` table); this module only writes the records.

==================  ===========================================================================
problem, optimizer  canonical spec strings (the problem's includes ``dim``)
family, dim         the landscape family and dimension
instance, seed      the landscape's instance seed and the run seed
steps, noise        the budget in optimizer steps; the gradient-noise standard deviation (or scale)
noise_model         the noise's law (:mod:`landbench.noise`), only where it is not ``gaussian``;
                    it is in ``settings`` too, and so in the key
batch_size          on a finite-sum landscape (:mod:`landbench.landscapes.finite_sum`): the examples
                    each gradient averaged over (n for the full batch); ``settings`` holds it (and
                    so the key) only when it is a minibatch
examples, epochs    on a finite sum: per-example gradients the run computed (``grad_evals *
                    batch_size``) and passes over the training set (``steps * batch_size / n``:
                    one minibatch per step, which every evaluation of the step uses)
dtype, device       where and in what precision the run ran
final_loss          f at the last iterate, noise-free (null if the run diverged)
f_star, loss_gap    the known optimum value and ``final_loss - f_star`` (null when f* is unknown)
test_loss           on a finite sum: the population loss at the last iterate (closed form, or a
                    held-out sample of the instance: the family's ``test_loss_kind``)
generalization_gap  ``test_loss - final_loss`` (both null if the run diverged)
escape_step         first step t >= 1 with f(x_t) at most halfway from the saddle's value to f*;
                    null with ``escaped: false`` when censored or diverged; both null without a saddle
targets             targets on the loss gap
reach_steps         per target, the first step from which the gap stays at most the target until
                    the end of the budget (null if the final gap is above it, or the run diverged)
reach_evals         the same in gradient evaluations spent
first_hit_steps     COCO's first-hitting step per target (kept as observed; for comparison only)
first_hit_evals     the same in gradient evaluations
sharpness           largest Hessian eigenvalue at the last iterate (Lanczos)
hessian_trace       Hutchinson estimate of tr H at the last iterate
basin_width         radius where the mean loss rise along random directions reaches ``tau``
                    (null if it never does within the scan: wider than ~4096 r0)
diverged            whether the loss became NaN or inf; ``diverged_step`` is the first step it was
grad_evals          gradient evaluations over the whole budget (a diverged run is charged them all)
batch_mode          how the runs of the batch were stepped: batched, per_tensor or separate
independence        for a batched or per-tensor batch: the seed re-run alone over the whole budget
                    and whether it matched its row; ``{"elementwise": "<class>"}`` for a class that
                    is elementwise by construction and not re-run (null for a separate batch)
wall_s, batch_runs  wall time of the optimisation loop of the batch the run was in, and its number
                    of runs (older records call it ``batch_size``:
                    :func:`landbench.outcomes.runs_in_batch` reads both)
threads             the intra-op threads the batch ran with (:mod:`landbench.threads`)
metrics_s           wall time of the batch's curvature metrics
curve               ``{"steps": [...], "loss": [...]}`` at log-spaced steps (null after divergence)
landbench_version, torch_version, schema, settings, key
==================  ===========================================================================
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from landbench._version import __version__
from landbench.engine import BatchOutcome
from landbench.errors import LandbenchError
from landbench.landscapes.base import Landscape
from landbench.landscapes.finite_sum import is_finite_sum
from landbench.minibatch import epochs_of, examples_seen
from landbench.optimizers import OptimizerSpec
from landbench.outcomes import FIELD_KINDS, RECORD_SCHEMA, settle
from landbench.settings import Settings


def run_key(
    problem: str,
    instance: int,
    optimizer: str,
    seed: int,
    steps: int,
    noise: float,
    device: str,
    settings: Settings,
    role: tuple[str, ...] | None = None,
) -> str:
    """A short stable hash of everything that determines a run's numbers (and where it ran), and of
    its ``role`` in a tuned suite, ``(phase, label[, tuning])``, when it has one."""
    identity: list[Any] = [RECORD_SCHEMA, problem, instance, optimizer, seed, steps, float(noise), device]
    if role is not None:
        identity.append(list(role))
    text = json.dumps(identity) + _settings_json(settings)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def tuning_json(tuning: Mapping[str, Any]) -> str:
    """A scored run's ``tuning`` field as its role holds it: JSON with sorted keys."""
    return json.dumps(tuning, sort_keys=True)


def run_role(phase: str | None, label: Any, tuning: str | None) -> tuple[str, ...] | None:
    """A run's role in a tuned suite, as :func:`run_key` hashes it: ``(phase, label[, tuning])`` with
    the tuning as canonical JSON (sorted keys), or None outside a tuned suite."""
    return None if phase is None else (phase, str(label), *([tuning] if tuning else []))


def key_on(record: Mapping[str, Any], device: str) -> str:
    """The key the run of ``record`` has on the device type ``device`` (``"cpu"``, ``"cuda"``): its
    problem, instance, optimizer, seed, steps, noise, settings and role in a tuned suite, hashed by
    :func:`run_key`, the one rule of what the same run is. Records of one run on two devices have
    the same ``key_on(record, d)`` for any ``d``. A record whose own key is not what this gives on
    its own device (another version of the rule wrote it) is a :class:`LandbenchError`."""
    tuning = record.get("tuning")
    role = run_role(record.get("phase"), record.get("label"), tuning_json(tuning) if tuning else None)
    settings = Settings.from_mapping(record["settings"], where=f"the settings of record {record.get('key')}")
    identity = [record[name] for name in ("problem", "instance", "optimizer", "seed", "steps", "noise")]
    own = run_key(*identity, str(record["device"]), settings, role)  # type: ignore[arg-type]
    if own != record.get("key"):
        raise LandbenchError(
            f"record {record.get('key')} ({record.get('problem')}, {record.get('optimizer')}, seed "
            f"{record.get('seed')}): its key is not the one landbench {__version__} gives it ({own})"
        )
    return run_key(*identity, device, settings, role)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=256)
def _settings_json(settings: Settings) -> str:
    """The settings as canonical JSON, once per distinct settings (not once per run)."""
    return json.dumps(settings.as_dict(), sort_keys=True)


def _number(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _step(value: int) -> int | None:
    return int(value) if value >= 0 else None


#: The fields landbench writes in a record (:data:`landbench.outcomes.FIELD_KINDS` and the per-target
#: lists); a family's own record fields may not take these names.
CORE_FIELDS = frozenset(FIELD_KINDS) | {"targets", "first_hit_steps", "first_hit_evals", "reach_steps", "reach_evals"}


def _family_fields(landscape: Landscape, outcome: BatchOutcome) -> dict[str, list[Any]]:
    """The family's own record fields (:meth:`Landscape.record_fields`), checked: a name of its own,
    one value per run of the batch; otherwise a :class:`~landbench.errors.LandbenchError` naming the family."""
    tracker = outcome.tracker
    extra = landscape.record_fields(outcome.final_x, tracker.escape_steps, tracker.diverged_step >= 0)
    rows = len(outcome.seeds)
    for name, values in extra.items():
        if name in CORE_FIELDS:
            raise LandbenchError(
                f"family {landscape.family}: its record field {name!r} would overwrite landbench's own"
            )
        if len(values) != rows:
            raise LandbenchError(
                f"family {landscape.family}: its record field {name!r} has {len(values)} values for {rows} runs"
            )
    return extra


def build_records(
    landscape: Landscape,
    optimizer: OptimizerSpec | Sequence[OptimizerSpec],
    outcome: BatchOutcome,
    *,
    steps: int,
    noise: float,
    settings: Settings,
) -> list[dict[str, Any]]:
    """The records of one batch, in the order of its rows; ``optimizer`` is one spec, or one per row
    (a learning-rate grid that shared the batch)."""
    specs = [optimizer] * len(outcome.seeds) if isinstance(optimizer, OptimizerSpec) else list(optimizer)
    tracker = outcome.tracker
    device = landscape.device.type
    # every tensor to Python lists once: indexing tensors element by element costs ~2 us a number
    final = tracker.last_loss.double().cpu().tolist()
    diverged_step = tracker.diverged_step.cpu().tolist()
    escape = tracker.escape_steps[:, 0].cpu().tolist() if tracker.escape_steps is not None else None
    extra = _family_fields(landscape, outcome)
    targets = {name: None if values is None else values.tolist() for name, values in _per_target(tracker).items()}
    evals = tracker.evals.cpu().tolist()
    curve = tracker.curve.double().cpu().tolist()
    curvature = {name: values.double().cpu().tolist() for name, values in outcome.curvature.items()}
    settings_dict = settings.as_dict()
    finite = is_finite_sum(landscape)
    test_losses = _test_losses(landscape, outcome.final_x) if finite else []
    f_star = None if landscape.f_star is None else _number(landscape.f_star)
    records = []
    for row, (seed, spec) in enumerate(zip(outcome.seeds, specs)):
        diverged = diverged_step[row] >= 0
        final_loss = _number(final[row])
        record: dict[str, Any] = {
            "problem": landscape.spec,
            "optimizer": spec.canonical,
            "family": landscape.family,
            "dim": landscape.dim,
            "instance": landscape.seed,
            "seed": seed,
            "steps": steps,
            "noise": float(noise),
            **({} if settings.noise_model == "gaussian" else {"noise_model": settings.noise_model}),
            **(_examples(landscape, settings, evals[row], steps) if finite else {}),
            "dtype": settings.dtype,
            "device": device,
            "final_loss": final_loss,
            "f_star": f_star,
            "loss_gap": None if landscape.f_star is None or final_loss is None else final_loss - landscape.f_star,
            **(_generalization(final_loss, test_losses[row]) if finite else {}),
            "escape_step": None if escape is None else _step(escape[row]),
            "escaped": None if escape is None else escape[row] >= 0,
            "targets": list(settings.targets),
            **{name: None if values is None else [_step(v) for v in values[row]] for name, values in targets.items()},
        }
        for name in ("sharpness", "hessian_trace", "basin_width"):
            record[name] = _number(curvature[name][row]) if name in curvature else None
        record.update(
            {
                "tau": settings.tau,
                "diverged": diverged,
                "diverged_step": _step(diverged_step[row]),
                "grad_evals": evals[row],
                "batch_mode": outcome.mode,
                "independence": outcome.independence,
                "wall_s": outcome.wall_s,
                "batch_runs": len(outcome.seeds),
                "threads": outcome.threads,
                **{name: values[row] for name, values in extra.items()},
                "curve": {"steps": tracker.curve_steps, "loss": [_number(v) for v in curve[row]]},
                "metrics_s": outcome.metrics_s,
                "landbench_version": __version__,
                "schema": RECORD_SCHEMA,
                "torch_version": torch.__version__,
                "settings": {**settings_dict, "targets": list(settings.targets)},
                "key": run_key(landscape.spec, landscape.seed, spec.canonical, seed, steps, noise, device, settings),
            }
        )
        records.append(settle(record))  # what a diverged run holds: landbench.outcomes' policy
    return records


def _test_losses(landscape: Landscape, final_x: torch.Tensor) -> list[float]:
    """The population (test) loss of each run's final point (a finite-sum family's ``test_loss``)."""
    with torch.no_grad():
        return landscape.test_loss(final_x).double().cpu().tolist()  # type: ignore[attr-defined]


def _examples(landscape: Landscape, settings: Settings, evals: int, steps: int) -> dict[str, Any]:
    """A finite-sum run's minibatch fields: its batch size (n for the full batch), the per-example
    gradients it computed (``evals * m``: SAM's two per step count twice) and the passes over the
    training set its steps made (``steps * m / n``: one minibatch per step)."""
    n = landscape.examples  # type: ignore[attr-defined]
    size = settings.batch_size or n
    return {"batch_size": size, "examples": examples_seen(evals, size), "epochs": epochs_of(steps, size, n)}


def _generalization(final_loss: float | None, test_loss: float) -> dict[str, Any]:
    """A finite-sum run's population loss at its final point and the gap test - train (null where
    the run diverged: :func:`landbench.outcomes.settle`)."""
    test = _number(test_loss)
    gap = None if test is None or final_loss is None else test - final_loss
    return {"test_loss": test, "generalization_gap": gap}


def _per_target(tracker: Any) -> dict[str, torch.Tensor | None]:
    """The per-target times of the tracker, by record field (-1 where censored; all None without f*)."""
    held = tracker.held()
    if held is None:
        return dict.fromkeys(("reach_steps", "reach_evals", "first_hit_steps", "first_hit_evals"))
    return {
        "reach_steps": held[0].cpu(),
        "reach_evals": held[1].cpu(),
        "first_hit_steps": tracker.first_hit_steps.cpu(),
        "first_hit_evals": tracker.first_hit_evals.cpu(),
    }
