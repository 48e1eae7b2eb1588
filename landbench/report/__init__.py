"""Reports and figures from run records (needs matplotlib: ``pip install 'landbench[plot]'``).

* :mod:`~landbench.report.data`: what the figures show, from records (no matplotlib);
* :mod:`~landbench.report.figures`: the report's figures, each skipped with a note when the data lack it;
* :mod:`~landbench.report.html`: the report's Markdown as a self-contained HTML page;
* :mod:`~landbench.report.build`: :func:`write_report` (``landbench report``);
* :mod:`~landbench.report.trajectories`: optimizer iterates and the 2-D plane to show them in;
* :mod:`~landbench.report.landscape`: :func:`plot_landscape` (``landbench plot``);
* :mod:`~landbench.report.mpl`: lazy matplotlib (Agg canvas, no pyplot) and the colours per optimizer.

matplotlib is imported only when a figure is drawn, so the rest of landbench never needs it.
"""

from landbench.report.build import Report, write_report
from landbench.report.mpl import INSTALL_HINT

__all__ = ["INSTALL_HINT", "Report", "write_report"]
