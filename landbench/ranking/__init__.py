"""Rank optimizers from run records: ``rank(records) -> Leaderboard``.

* :mod:`~landbench.ranking.scenarios`: records to scenarios, per-optimizer summaries (through
  :func:`landbench.outcomes.summarize`), provenance and coverage checks;
* :mod:`~landbench.ranking.stats`: ERT, average ranks, bootstrap CIs, Wilcoxon and Holm;
* :mod:`~landbench.ranking.profiles`: performance profiles and the AlgoPerf score;
* :mod:`~landbench.ranking.leaderboard`: :func:`rank` and the :class:`Leaderboard` it returns;
* :mod:`~landbench.ranking.render`: strict JSON, Markdown, terminal text.

The names below are imported on first use, so that :mod:`landbench.outcomes` can use the pure
statistics of :mod:`~landbench.ranking.stats` while the leaderboard uses the outcomes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from landbench.ranking.leaderboard import Leaderboard, rank
    from landbench.ranking.scenarios import GROUPS, group_of

_LAZY = {
    "Leaderboard": "landbench.ranking.leaderboard",
    "rank": "landbench.ranking.leaderboard",
    "GROUPS": "landbench.ranking.scenarios",
    "group_of": "landbench.ranking.scenarios",
}

__all__ = ["GROUPS", "Leaderboard", "group_of", "rank"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'landbench.ranking' has no attribute {name!r}")
