"""Results as JSON Lines: one record per run, appended and flushed to disk as each batch finishes.

A folder holds ``results.jsonl``. Writing appends whole lines and fsyncs, so a sweep that is
interrupted loses at most the batch in flight; a line cut short by a crash is set aside (copied
to ``results.jsonl.torn``) and truncated away when the store is next opened, and the runs it held
are run again. Records that were written are never rewritten. Appends and repairs hold an
exclusive lock on ``results.jsonl.lock`` (POSIX ``flock``), so several processes can write into one
folder; each skips what was stored when it started, so they may repeat each other's runs, and
readers keep the first record of a key.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

RESULTS_FILE = "results.jsonl"


class ResultStore:
    """The JSONL results of one output folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / RESULTS_FILE

    def records(self) -> list[dict[str, Any]]:
        """Every stored record, in the order written (repairing a torn last line first)."""
        if not self.path.exists():
            return []
        with self._lock():
            self._repair_torn_tail()
        return list(read_jsonl(self.path))

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records as lines and force them to disk."""
        lines = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records)
        if not lines:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock(), open(self.path, "a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """An exclusive lock across processes (a no-op where ``fcntl`` does not exist)."""
        if fcntl is None:
            yield
            return
        with open(self.path.with_name(RESULTS_FILE + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _repair_torn_tail(self) -> None:
        """If the file does not end with a newline, the last write was cut short: set that part aside."""
        with open(self.path, "rb+") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            if size == 0:
                return
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            handle.seek(0)
            data = handle.read()
            cut = data.rfind(b"\n") + 1
            with open(self.path.with_name(RESULTS_FILE + ".torn"), "ab") as torn:
                torn.write(data[cut:] + b"\n")
            handle.truncate(cut)
        print(
            f"landbench: {self.path}: the last line was cut short (an interrupted write); "
            f"set it aside in {RESULTS_FILE}.torn, its runs will run again",
            file=sys.stderr,
        )


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file (gzipped if its name ends in ``.gz``); a malformed line is reported
    on stderr and skipped, never deleted."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                print(f"landbench: {path}:{number}: skipping a line that is not JSON ({exc.msg})", file=sys.stderr)


def load_results(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Records from result folders and/or ``.jsonl`` (or ``.jsonl.gz``) files."""
    out: list[dict[str, Any]] = []
    for path in map(Path, paths):
        if path.is_dir():
            out.extend(ResultStore(path).records())
        elif path.is_file():
            out.extend(read_jsonl(path))
        else:
            raise FileNotFoundError(f"no results at {str(path)!r}: give a results folder or a .jsonl file")
    return out
