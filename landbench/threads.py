"""How many intra-op threads a batch runs with: chosen per size, overridable, recorded.

torch's CPU kernels split a tensor across threads only above a few tens of thousands of elements,
and every split pays a fork-join. On a quiet machine a second thread gains little below about a
million elements per tensor; on a machine where another process is busy, a thread pool that waits
for a descheduled thread costs 5 to 70 times the work itself (measured in ``BENCHMARKS.md``). So a
batch of ``B x d`` elements below :data:`SMALL_BATCH_ELEMENTS` runs on one thread, and a larger one
on the threads the process has (``torch.get_num_threads()``: torch's default, the physical cores,
in a plain process, a pool worker's share of them), less one when they would take every CPU it may
run on (:func:`large_batch_threads`): with one busy process beside it, a batch that waits on the
busy core ran 2 to 11 times slower at 2 x 10^6 elements; one that leaves it a core gives up one
core of a quiet machine's (on 2 cores, 1.4 to 2.8 times from 2 x 10^6 to 8 x 10^6 elements:
``BENCHMARKS.md``).

The user's choice wins: ``threads=N`` (API), ``--threads N`` (CLI) or the ``LANDBENCH_THREADS``
environment variable, in that order. Every record says how many threads its batch ran with
(``threads``). The choice depends on the machine, never on its load at the time, so the same
command on the same machine gives the same records bit for bit. On another thread count, records
agree to floating-point tolerance; bit for bit only where every sum is over the rows of a batch of
two or more runs (torch then gives each row to one thread): the elementwise families with the
optimizers that step the batch as one tensor. A batch of one run (torch splits its row's sum across
threads), optimizers stepped one run at a time (LBFGS's dot products), the spot check's
``independence`` difference (it re-runs one row alone) and matrix products (``gaussian_field``,
``matrix_sensing``) round differently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from landbench.errors import SpecError

#: The environment variable that overrides the automatic choice.
ENV = "LANDBENCH_THREADS"
#: Below this many elements (runs x dimension) a batch runs on one thread.
SMALL_BATCH_ELEMENTS = 1 << 20
#: The most threads one may ask for.
MAX_THREADS = 1024


def check_threads(value: object, where: str = "threads") -> int:
    """``value`` as a thread count, or :class:`SpecError` naming what is valid."""
    text = str(value).strip()
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_THREADS:
        raise SpecError(f"{where} must be a whole number of threads from 1 to {MAX_THREADS}, got {value!r}")
    return int(text)


def requested_threads(threads: int | None = None) -> int | None:
    """The user's thread count: ``threads`` if given, else ``$LANDBENCH_THREADS`` if set, else None."""
    if threads is not None:
        return check_threads(threads)
    value = os.environ.get(ENV, "").strip()
    return check_threads(value, ENV) if value else None


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity; the machine's count where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def oversubscription(threads: int | None) -> str | None:
    """What to tell a user who asked for more threads than the cores the process may run on (they
    then wait for each other at every kernel), or None."""
    cores = available_cores()
    if threads is None or threads <= cores:
        return None
    return f"{threads} threads on {cores} cores: they wait for each other at every kernel (at most {cores} pay)"


def worker_threads(workers: int) -> int:
    """The intra-op threads of each of ``workers`` pool worker processes: this process's threads
    (``torch.get_num_threads()``: torch's default, the physical cores, unless set) shared out, at
    least one each, so that a pool asks for no more threads than the process would alone (logical
    CPUs would put two threads on each core of a machine with two logical CPUs per core)."""
    return max(1, torch.get_num_threads() // workers)


def large_batch_threads() -> int:
    """The threads of a batch of :data:`SMALL_BATCH_ELEMENTS` or more: the process's threads
    (``torch.get_num_threads()``), less one when they would take every core the process may run on.

    A fork-join over every core waits, at each kernel, for the slowest thread; with any other busy
    process on the machine one of them is descheduled, and the batch runs at the scheduler's pace
    (2 to 11 times slower at 2 x 10^6 elements on 2 cores with one busy process). Leaving one core
    to the rest of the machine bounds that, for one core of a quiet machine's. Cores are the logical
    CPUs of the process's affinity (:func:`available_cores`). A pool worker, given its share of the
    driver's threads (:func:`worker_threads`), keeps it."""
    budget = torch.get_num_threads()
    cores = available_cores()
    return max(1, cores - 1) if budget >= cores else budget


def choose_threads(elements: int, threads: int | None = None) -> int:
    """The intra-op threads for a batch of ``elements`` (runs x dimension): the user's choice
    (:func:`requested_threads`), else 1 below :data:`SMALL_BATCH_ELEMENTS`, else
    :func:`large_batch_threads`."""
    chosen = requested_threads(threads)
    if chosen is not None:
        return chosen
    return 1 if elements < SMALL_BATCH_ELEMENTS else large_batch_threads()


@contextmanager
def using_threads(count: int) -> Iterator[int]:
    """Run the block with ``count`` intra-op threads, then restore the process's own count."""
    before = torch.get_num_threads()
    if count != before:
        torch.set_num_threads(count)
    try:
        yield count
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
