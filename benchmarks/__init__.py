"""landbench's asv suite (airspeed velocity): ``asv run --python=same --quick`` from the repository root.

* ``bench_landscapes``: time and peak memory of one closed-form loss-and-gradient evaluation;
* ``bench_steps``: time and peak memory of optimizer runs through the batched engine;
* ``bench_quality``: quality numbers of the classical optimizers at their tuned rates (larger is worse);
* ``bench_table``: the table of ``landbench bench``: the hand-written loop, ``landbench.run`` without
  and with its metrics, and the naive per-run loop, per size and optimizer, and their ratios.

Helpers live in private modules and names (a leading underscore), which asv does not collect.
"""

import sys

# Building a torch optimizer imports torch._dynamo on first use (2 to 3 s). asv's fork server
# (asv.conf.json: "launch_method"; asv starts it as `benchmark.py run_server ...`) imports this
# package once and forks a process per benchmark, so importing torch._dynamo there spares every
# benchmark that time. It is an import only, no tensor work, so the forked processes start with
# torch's thread pool untouched. Discovery and `asv check` do not need it.
if "run_server" in sys.argv[1:2]:
    import torch._dynamo  # noqa: F401
