"""Rank optimizers from run records: ``rank(records) -> Leaderboard``.

* :mod:`~landbench.ranking.scenarios`: records to scenarios, per-optimizer summaries (ERT and
  success rate per target, diverged runs, median final gap), provenance and coverage checks;
* :mod:`~landbench.ranking.stats`: ERT, average ranks, bootstrap CIs, Wilcoxon and Holm;
* :mod:`~landbench.ranking.profiles`: performance profiles and the AlgoPerf score;
* :mod:`~landbench.ranking.leaderboard`: :func:`rank` and the :class:`Leaderboard` it returns;
* :mod:`~landbench.ranking.render`: strict JSON, Markdown, terminal text.
"""

from landbench.ranking.leaderboard import Leaderboard, rank
from landbench.ranking.scenarios import GROUPS, group_of

__all__ = ["GROUPS", "Leaderboard", "group_of", "rank"]
