"""A wide basin and a narrow one (or more Gaussian wells) inside a weak bowl.

The point of the family (DESIGN.md): flat minima are more robust than sharp ones, and which one an
optimizer ends in matters. Every minimum, saddle and barrier is computed at construction to float64
precision, and every run's record says which basin it ended in.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from landbench.errors import SpecError
from landbench.landscapes.base import (
    DIM,
    CriticalPoint,
    FamilyField,
    Footprint,
    Known,
    Landscape,
    describe_ends,
    squared_norm,
    where_runs_ended,
)
from landbench.outcomes import is_diverged
from landbench.spec import Param, bind_params, parse_spec

#: The default wells, ``(depth, width)``: well 0 wide, well 1 narrow (sixteen times the curvature).
DEFAULT_WELLS = ((1.0, 1.0), (1.0, 0.25))

#: Half-width, in widths, of the fine scan about each centre. Beyond it ``exp(-r^2/(2 w^2))`` is
#: exactly 0 in float64 (it underflows past 38.6 widths), so no critical point can hide there.
_REACH = 40.0
#: Scan points per width near each centre, and points of the coarse scan between the centres.
_PER_WIDTH = 64
_COARSE = 4097
#: A well's minimum must lie within this many widths of its centre: a well's own minimum is never
#: displaced by more than about 1.2 widths before it vanishes (scanned over depths, widths and bowls),
#: so a minimum farther out belongs to the bowl (e.g. a well of depth 1e-3 beside a deep one).
_OWN = 1.25


def widest_well(wells: Any) -> int:
    """The index of the widest of ``wells`` (``(depth, width)`` pairs; the first of equally wide ones):
    the well whose basin the records, the assertions and the reports call "the wide basin"."""
    widths = [float(width) for _, width in wells]
    return widths.index(max(widths))


def narrowest_well(wells: Any) -> int:
    """The index of the narrowest of ``wells`` (the first of equally narrow ones)."""
    widths = [float(width) for _, width in wells]
    return widths.index(min(widths))


def well_index(problem: str, which: int | str = "wide") -> int:
    """The index of a well of a ``basins`` problem spec: ``"wide"`` (:func:`widest_well`),
    ``"narrow"`` (:func:`narrowest_well`) or an index, checked against the problem's wells."""
    wells = wells_of(problem)
    if which == "wide":
        return widest_well(wells)
    if which == "narrow":
        return narrowest_well(wells)
    if isinstance(which, bool) or not isinstance(which, int) or not 0 <= which < len(wells):
        raise ValueError(
            f"basin must be 'wide', 'narrow' or a well index 0..{len(wells) - 1} of {problem}, got {which!r}"
        )
    return which


@functools.lru_cache(maxsize=1024)
def wells_of(problem: str) -> tuple[tuple[float, float], ...]:
    """The ``(depth, width)`` wells of a ``basins`` problem spec (defaults filled in), without building it."""
    spec = parse_spec(problem, what="problem")
    return tuple(tuple(map(float, well)) for well in bind_params(Basins.family, Basins.params, spec.kwargs)["wells"])


def in_basin(record: dict[str, Any], which: int | str = "wide") -> bool:
    """Whether a run ended in a well's basin (``which``: see :func:`well_index`); a diverged run ended
    in none (:mod:`landbench.outcomes`)."""
    return not is_diverged(record) and record.get("basin") == well_index(str(record["problem"]), which)


def summarize_basins(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Where the runs ended (:func:`~landbench.landscapes.base.where_runs_ended`), and how many, and
    which share of all runs (diverged ones included, as misses), ended in the wide basin."""
    summary = where_runs_ended(records, "basin")
    wide = sum(in_basin(r) for r in records)
    return {**summary, "wide": wide, "wide_share": wide / len(records) if records else None}


def _is_positive(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(float(value)) and float(value) > 0
    except OverflowError:
        return False


class WellsParam(Param):
    """A non-empty tuple of ``(depth, width)`` pairs of finite numbers > 0, coerced to floats (so
    that ``((2, 1),)`` and ``((2.0, 1.0),)`` have one canonical form)."""

    def describe_range(self) -> str:
        return "a non-empty tuple of (depth, width) pairs of finite numbers > 0"

    def coerce(self, value: Any, owner: str) -> tuple[tuple[float, float], ...]:
        pairs = super().coerce(value, owner)
        example = "for example ((1.0, 1.0), (1.0, 0.25)) (a wide well, then a narrow one)"
        if not pairs:
            raise SpecError(f"{owner}: {self.name} must be {self.describe_range()}, {example}; got {value!r}")
        out = []
        for j, pair in enumerate(pairs):
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(_is_positive(v) for v in pair)):
                raise SpecError(
                    f"{owner}: {self.name} must be {self.describe_range()}, {example}; "
                    f"well {j} is {pair!r} in {value!r}"
                )
            out.append((float(pair[0]), float(pair[1])))
        return tuple(out)


@dataclass(frozen=True)
class AxisProfile:
    r"""The landscape on and near its axis, in float64 numpy: ``g(t, p) = f(t u + y)`` with
    ``p = |y|^2``, ``y`` orthogonal to the axis u:

    ``g(t, p) = bowl/2 (t^2 + p) - sum_j a_j exp(-((t - t_j)^2 + p) / (2 w_j^2))``.

    On the axis (p = 0): ``g' = bowl t + sum_j a_j e_j (t - t_j)/w_j^2``, ``g'' = bowl + sum_j
    a_j e_j (1 - (t - t_j)^2/w_j^2)/w_j^2``, and the Hessian's eigenvalue across the axis (d - 1
    times) is ``transverse = bowl + sum_j a_j e_j / w_j^2``, with ``e_j = exp(-(t - t_j)^2/(2 w_j^2))``.
    """

    bowl: float
    centres: np.ndarray
    depths: np.ndarray
    widths: np.ndarray

    def _gauss(self, t: np.ndarray, p: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``(a_j e_j, t - t_j)`` with a trailing well axis."""
        offset = np.asarray(t, dtype=np.float64)[..., None] - self.centres
        p = np.asarray(p, dtype=np.float64)[..., None]
        return self.depths * np.exp(-(offset * offset + p) / (2 * self.widths**2)), offset

    def value(self, t: np.ndarray, p: np.ndarray | float = 0.0) -> np.ndarray:
        weight, _ = self._gauss(t, p)
        return 0.5 * self.bowl * (np.asarray(t) ** 2 + p) - weight.sum(-1)

    def slope(self, t: np.ndarray) -> np.ndarray:
        weight, offset = self._gauss(t)
        return self.bowl * np.asarray(t) + (weight * offset / self.widths**2).sum(-1)

    def curvature(self, t: np.ndarray) -> np.ndarray:
        weight, offset = self._gauss(t)
        return self.bowl + (weight * (1 - offset**2 / self.widths**2) / self.widths**2).sum(-1)

    def transverse(self, t: np.ndarray) -> np.ndarray:
        weight, _ = self._gauss(t)
        return self.bowl + (weight / self.widths**2).sum(-1)

    def critical_points(self) -> tuple[np.ndarray, np.ndarray]:
        """All local minima and maxima of ``g(t) = g(t, 0)``, sorted: a scan fine near every well
        (64 points per width over 40 widths each side, beyond which the wells are exactly 0 in
        float64) and coarse between them, then Brent's method on ``g'`` in every bracket where its
        sign changes. Minima and maxima alternate, minima at both ends (``g' < 0`` left of the
        first centre, ``> 0`` right of the last)."""
        steps = np.linspace(-_REACH, _REACH, int(2 * _REACH * _PER_WIDTH) + 1)
        fine = (self.centres[:, None] + self.widths[:, None] * steps).ravel()
        grid = np.unique(np.concatenate([np.linspace(self.centres[0], self.centres[-1], _COARSE), [0.0], fine]))
        with np.errstate(all="ignore"):
            slope = self.slope(grid)
        if not np.all(np.isfinite(slope)):
            raise SpecError("basins: these parameters overflow the landscape; choose parameters of moderate size")
        rising = np.flatnonzero((slope[:-1] < 0) & (slope[1:] >= 0))
        falling = np.flatnonzero((slope[:-1] > 0) & (slope[1:] <= 0))
        return self._roots(grid, rising), self._roots(grid, falling)

    def _roots(self, grid: np.ndarray, brackets: np.ndarray) -> np.ndarray:
        import scipy.optimize  # here: every command imports the catalogue, scipy.optimize costs 0.4 s

        def slope(t: float) -> float:
            return float(self.slope(np.array(t)))

        tiny, rtol = np.finfo(np.float64).tiny, 4 * np.finfo(np.float64).eps
        return np.array(
            [scipy.optimize.brentq(slope, grid[i], grid[i + 1], xtol=tiny, rtol=rtol, maxiter=500) for i in brackets]
        )


@dataclass(frozen=True)
class Basin:
    """One well's basin: its minimum, the saddles that flank it on the axis (None past the outer
    wells, where the bowl rises for ever), the barriers over them (saddle value minus minimum
    value) and ``level``, the lower flanking saddle value (inf with one well): a point of the
    slab between the flanking saddles whose loss is below ``level`` cannot leave without climbing."""

    well: int
    depth: float
    width: float
    centre: float
    minimum: CriticalPoint
    left: CriticalPoint | None
    right: CriticalPoint | None

    @property
    def left_barrier(self) -> float | None:
        return None if self.left is None else self.left.value - self.minimum.value

    @property
    def right_barrier(self) -> float | None:
        return None if self.right is None else self.right.value - self.minimum.value

    @property
    def level(self) -> float:
        return min((s.value for s in (self.left, self.right) if s is not None), default=math.inf)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the well, its minimum's value and axis coordinate, and its barriers."""
        return {
            "well": self.well,
            "depth": self.depth,
            "width": self.width,
            "centre": self.centre,
            "minimum_value": self.minimum.value,
            "lambda_max": self.minimum.lambda_max,
            "trace": self.minimum.trace,
            "left_barrier": self.left_barrier,
            "right_barrier": self.right_barrier,
        }


class Basins(Landscape):
    r"""``f(x) = bowl/2 |x|^2 - sum_j a_j exp(-|x - c_j|^2 / (2 w_j^2))``: Gaussian wells in a weak bowl.

    Well j has depth ``a_j`` and width ``w_j`` (``wells``, default a wide well (1, 1) and a narrow
    one (1, 0.25)); the centres lie on one axis u (e_1, or with ``rotate=True`` a seeded random unit
    vector drawn from the generator of (dim,) only), ``c_j = t_j u`` with ``t_j = (j - (n-1)/2)
    separation``: spaced ``separation`` apart, centred on the origin, well 0 the most negative. The
    bowl makes the loss coercive and pulls every start towards the wells in any dimension: under
    the bowl alone, gradient descent contracts x by ``1 - lr bowl`` per step.

    * Gradient ``bowl x + sum_j a_j e_j (x - c_j)/w_j^2``; Hessian-vector product ``bowl v + sum_j
      a_j e_j [v/w_j^2 - ((x - c_j).v) (x - c_j)/w_j^4]``, ``e_j = exp(-|x - c_j|^2/(2 w_j^2))``.
    * Critical points lie on the axis: across it the gradient is ``(bowl + sum_j a_j e_j/w_j^2) y``,
      zero only at ``y = 0``. On the axis, ``g(t) = f(t u)``; at a critical point the Hessian has
      eigenvalue ``g''(t)`` along u and ``bowl + sum_j a_j e_j/w_j^2 > 0`` across (d - 1 times), so
      the local minima of g are minima of f and its local maxima are saddles of index 1. They are
      found at construction to float64 precision (:class:`AxisProfile`) and listed in
      ``known.minima`` (global first), ``saddles`` and ``basins`` (one :class:`Basin` per well).
      ``f*`` is the lowest minimum value.
    * Barriers: on the hyperplane through a saddle orthogonal to the axis, f increases with the
      distance from the axis, so every path from one side to the other passes at or above the
      saddle: its value is the barrier of the best path, and the barrier of a basin over each side
      is that saddle's value minus the minimum's.
    * Each well must make one minimum of its own, within 2 widths of its centre; otherwise (a well
      too shallow or narrow for the bowl's slope, wells so close that they merge, or wells so far
      apart that the bowl's own minimum lies outside every well) the parameters are refused with a
      SpecError saying which.
    * Record field ``basin``: the well whose basin the final iterate is in: x is in basin j when its
      axis coordinate ``t = x.u`` lies between the saddles flanking minimum j and ``f(x)`` is below
      the lower of them (then gradient flow from x cannot leave: it ends at minimum j). Null
      otherwise, and for diverged runs.
    * Theory for the experiments (not tested here): gradient descent cannot stay in a minimum whose
      ``lambda_max > 2/lr`` (dynamical stability, Wu, Ma and E 2018), so the narrow well filters
      large steps. With gradient noise sigma, GD is Langevin dynamics at temperature ``T = lr
      sigma^2 / 2`` in time ``lr * step``; for ``barrier >> T`` it leaves a basin over a saddle at
      the Eyring-Kramers rate ``|g''(s)| / (2 pi) sqrt(det H(m) / |det H(s)|) exp(-barrier / T)``,
      with ``det H = g'' transverse^(d-1)`` at the minimum m and the saddle s (both known).

    Start: ``x0 ~ N(0, init_scale^2 I_d)``.

    References: S. Hochreiter and J. Schmidhuber, "Flat minima", Neural Computation 1997; N. S.
    Keskar et al., "On large-batch training for deep learning: generalization gap and sharp
    minima", ICLR 2017; L. Wu, C. Ma and W. E, "How SGD selects the global minima in
    over-parameterized learning: a dynamical stability perspective", NeurIPS 2018; H. A. Kramers,
    Physica 1940 (escape over a barrier).
    """

    family = "basins"
    params = (
        DIM,
        WellsParam("wells", tuple, DEFAULT_WELLS, "(depth, width) of each Gaussian well, in order along the axis"),
        Param("separation", float, 3.0, "distance between neighbouring well centres", low=0.0, low_open=True),
        Param("bowl", float, 0.05, "curvature of the quadratic bowl around the wells", low=0.0, low_open=True),
        Param("rotate", bool, False, "wells along a seeded random unit vector instead of e_1"),
        Param("init_scale", float, 2.0, "standard deviation of each start coordinate", low=0.0, low_open=True),
    )
    formula = "f(x) = bowl/2 |x|^2 - sum_j a_j exp(-|x - t_j u|^2 / (2 w_j^2)),  t_j = (j - (n-1)/2) separation"
    outcome_fields = (
        FamilyField(
            "basin",
            "the well whose basin the final iterate is in (null: none, or diverged); summary: runs per well, and "
            "the share of all runs in the widest well",
            lambda records: summarize_basins(records),
            describe_ends("basin"),
        ),
    )
    reference = "Hochreiter and Schmidhuber 1997; Keskar et al. 2017; Wu, Ma and E 2018"
    start = "x0 ~ N(0, init_scale^2 I_d)"

    wells: tuple[tuple[float, float], ...]
    separation: float
    bowl: float
    rotate: bool
    init_scale: float

    def _check(self) -> None:
        depths, widths = (np.array(column, dtype=np.float64) for column in zip(*self.wells))
        centres = (np.arange(len(self.wells)) - (len(self.wells) - 1) / 2) * self.separation
        self.profile = AxisProfile(self.bowl, centres, depths, widths)
        self._minima_t, self._saddles_t = self._axis_critical_points()

    def _axis_critical_points(self) -> tuple[np.ndarray, np.ndarray]:
        """The axis coordinates of the minima (one per well, in well order) and of the saddles
        between them; a SpecError when the wells do not make one minimum each."""
        minima, maxima = self.profile.critical_points()
        setting = f"wells={self.wells!r}, separation={self.separation!r}, bowl={self.bowl!r}"
        alternating = len(maxima) == len(minima) - 1 and np.all(minima[:-1] < maxima) and np.all(maxima < minima[1:])
        flat = np.concatenate([self.profile.curvature(minima) <= 0, self.profile.curvature(maxima) >= 0])
        if not alternating or flat.any():
            raise SpecError(
                f"basins: with {setting} a critical point is degenerate (the parameters sit where a minimum "
                f"appears or vanishes); change depth, width, separation or bowl slightly"
            )
        centres, widths = self.profile.centres, self.profile.widths
        if len(minima) == len(centres):
            distance = np.abs(minima - centres) / widths
            if np.all(distance <= _OWN):
                return minima, maxima
            j = int(np.argmax(distance))
            problem = (
                f"the minimum at t={minima[j]:.6g} that would be well {j}'s lies {distance[j]:.3g} widths from its "
                f"centre t={centres[j]:.6g}, outside the well (at most {_OWN:g})"
            )
        else:
            where = [round(float(t), 6) for t in minima]
            problem = f"the landscape has {len(minima)} {'minimum' if len(minima) == 1 else 'minima'} (at t={where})"
        raise SpecError(
            f"basins: every well must make one minimum of its own, within {_OWN:g} widths of its centre, but with "
            f"{setting} {problem} for {len(centres)} wells (centres at t={centres.tolist()}). A well too shallow or "
            f"too narrow for the bowl's slope makes none, and close wells merge: make the wells deeper or wider, "
            f"the bowl weaker or the separation larger; far wells leave the bowl's own minimum between them: "
            f"make the separation smaller"
        )

    def _footprint(self, dtype: torch.dtype, free: int) -> Footprint:
        """A minimum per well and a saddle between neighbours: points of dimension d, on the host and
        the device."""
        points = 2 * len(self.wells) + 2
        return Footprint(instance=points * self.dim * (8 + dtype.itemsize), host=points * self.dim * 8)

    def _build(self) -> None:
        d = self.dim
        axis = torch.zeros(d, dtype=torch.float64)
        axis[0] = 1.0
        self.axis: torch.Tensor | None = None
        if self.rotate:
            axis = torch.randn(d, generator=self.instance_generator(d), dtype=torch.float64)
            axis /= axis.norm()
            self.axis = self._tensor(axis)
        self.saddles = [self.place(self._axis_point(t, axis, "saddle")) for t in self._saddles_t]
        self.basins = [
            Basin(
                well=j,
                depth=float(self.profile.depths[j]),
                width=float(self.profile.widths[j]),
                centre=float(self.profile.centres[j]),
                minimum=self.place(self._axis_point(t, axis, "minimum", f"well {j}: (depth, width) {self.wells[j]}")),
                left=self.saddles[j - 1] if j > 0 else None,
                right=self.saddles[j] if j < len(self.saddles) else None,
            )
            for j, t in enumerate(self._minima_t)
        ]
        widths2 = torch.from_numpy(self.profile.widths**2)
        self.centres = self._tensor(torch.from_numpy(self.profile.centres))
        self.depths = self._tensor(torch.from_numpy(self.profile.depths))
        self.inverse_two_width2 = self._tensor(-0.5 / widths2)
        self.inverse_width2 = self._tensor(1.0 / widths2)
        minima = sorted((b.minimum for b in self.basins), key=lambda m: m.value)
        self._levels = np.array([b.level for b in self.basins])
        self.known = Known(f_star=minima[0].value, minima=minima, saddles=list(self.saddles))

    def _axis_point(self, t: float, axis: torch.Tensor, kind: str, note: str = "") -> CriticalPoint:
        """The critical point ``t u``: Hessian eigenvalues ``g''(t)`` (along u) and ``transverse``."""
        along, across = float(self.profile.curvature(np.array(t))), float(self.profile.transverse(np.array(t)))
        spectrum = [along] + ([across] if self.dim > 1 else [])
        return CriticalPoint(
            kind=kind,
            value=float(self.profile.value(np.array(t))),
            point=float(t) * axis + 0.0,  # + 0.0: no -0.0 entries
            index=int(along < 0),
            lambda_max=max(spectrum),
            lambda_min=min(spectrum),
            trace=along + (self.dim - 1) * across,
            note=f"axis coordinate t = {float(t)!r}" + (f"; {note}" if note else ""),
        )

    def facts(self) -> dict[str, Any]:
        """Per well its minimum and barriers, the saddles, and the definition of ``basin``."""
        return {
            "basins": [b.summary() for b in self.basins],
            "saddle_values": [s.value for s in self.saddles],
            "basin_field": "record 'basin': the well j with t = x.u between the saddles flanking minimum j "
            "and f(x) below the lower of them; null otherwise",
        }

    # --- evaluation -----------------------------------------------------------------------------

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(t, y)``: the axis coordinate ``x.u`` (B,) and the part across the axis: ``x[:, 1:]``,
        or with ``rotate`` the explicit ``x - t u`` (B, d), formed rather than read off ``|x|^2 - t^2``,
        which would cancel near the axis, where the minima are."""
        if self.axis is None:
            return x[:, 0], x[:, 1:]
        t = x @ self.axis
        return t, torch.addcmul(x, t[:, None], self.axis, value=-1.0)

    def _join(self, along: torch.Tensor, *terms: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """A fresh ``sum_k c_k y_k + along u`` from across-axis parts ``y_k`` in :meth:`_split`'s
        form and per-row coefficients ``c_k`` (B,), written straight into the output: with ``rotate``
        that is ``y_0`` itself, :meth:`_split`'s own temporary (no new (B, d) buffer)."""
        (c0, y0), *rest = terms
        if self.axis is None:
            out = y0.new_empty((y0.shape[0], self.dim))
            across = torch.mul(y0, c0[:, None], out=out[:, 1:])
            out[:, 0] = along
        else:
            out = across = y0.mul_(c0[:, None])
        for c, y in rest:
            across.addcmul_(y, c[:, None])
        if self.axis is not None:
            out.addcmul_(along[:, None], self.axis)
        return out

    def _wells(self, t: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a_j e_j, t - t_j)``, both (B, n), from the axis coordinate and ``p = |y|^2``."""
        offset = t[:, None] - self.centres
        weight = self.depths * torch.exp((offset * offset + p[:, None]) * self.inverse_two_width2)
        return weight, offset

    def _value(self, t: torch.Tensor, p: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.bowl * (t * t + p) - weight.sum(1)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """``bowl/2 (t^2 + |y|^2) - sum_j a_j exp(-((t - t_j)^2 + |y|^2)/(2 w_j^2))``, t = x.u, y across."""
        t, across = self._split(x)
        p = squared_norm(across)
        return self._value(t, p, self._wells(t, p)[0])

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``grad = transverse y + (bowl t + sum_j a_j e_j (t - t_j)/w_j^2) u``, transverse = ``bowl + sum_j
        a_j e_j / w_j^2`` (the axial part from the differences ``t - t_j``, exact at the minima)."""
        t, across = self._split(x)
        p = squared_norm(across)
        weight, offset = self._wells(t, p)
        pull = weight * self.inverse_width2
        transverse = self.bowl + pull.sum(1)
        along = self.bowl * t + (pull * offset).sum(1)
        return self._value(t, p, weight), self._join(along, (transverse, across))

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``H v = transverse v - sum_j b_j (x - c_j)`` with ``b_j = a_j e_j ((x - c_j).v) / w_j^4``;
        ``x - c_j = y + (t - t_j) u``, so ``(x - c_j).v = y.v + (t - t_j) v_u`` and
        ``H v = transverse v - (sum_j b_j) y - (sum_j b_j (t - t_j)) u``."""
        t, across = self._split(x)
        p = squared_norm(across)
        weight, offset = self._wells(t, p)
        pull = weight * self.inverse_width2
        transverse = self.bowl + pull.sum(1)
        if self.axis is None:
            v_along, v_rest = v[:, 0], v[:, 1:]
        else:  # y.v needs no projection of v (y is across the axis), and transverse v is taken whole
            v_along, v_rest = v @ self.axis, v
        b = pull * self.inverse_width2 * (torch.linalg.vecdot(across, v_rest)[:, None] + offset * v_along[:, None])
        along = -(b * offset).sum(1)
        if self.axis is None:
            along = along + transverse * v_along
        return self._join(along, (-b.sum(1), across), (transverse, v_rest))

    def record_fields(
        self, x: torch.Tensor, escape_steps: torch.Tensor | None, diverged: torch.Tensor
    ) -> dict[str, list[Any]]:
        """``basin``: the well whose basin the final iterate is in (:meth:`basin_of`); null when in no
        basin (above a barrier) or when the run diverged."""
        gone = diverged.cpu().numpy()
        return {"basin": [int(j) if j >= 0 and not lost else None for j, lost in zip(self.basin_of(x), gone)]}

    def basin_of(self, x: torch.Tensor) -> np.ndarray:
        """The rule of ``basin``: the well j whose basin each row of ``x`` is in, ``t = x.u`` strictly
        between the saddles flanking minimum j and ``f(x)`` (in float64) below the lower of them; -1
        in none (above a barrier, or not finite). An int array on the host."""
        with torch.no_grad():
            t, across = self._split(x.detach())
            p = squared_norm(across)
        t64, p64 = t.double().cpu().numpy(), p.double().cpu().numpy()
        slot = np.searchsorted(self._saddles_t, t64)  # NaN sorts last
        with np.errstate(all="ignore"):
            inside = self.profile.value(t64, p64) < self._levels[slot]
        return np.where(inside, slot, -1)

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return self.init_scale * torch.randn(self.dim, generator=generator, dtype=torch.float64)
