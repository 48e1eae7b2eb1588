"""Results as JSON Lines: one record per run, appended and flushed to disk as each job finishes.

**Writing.** A folder holds ``results.jsonl``. :meth:`ResultStore.append` writes all the lines of
one call with a single ``os.write`` on a file opened ``O_APPEND``, under an exclusive ``flock`` on
``results.jsonl.lock``, and fsyncs: two processes appending into one file (two sweeps, or shards on
a shared file system) neither interleave nor clobber each other's lines, and a sweep that is
interrupted loses at most the job in flight. Records that were written are never rewritten. A
write that fails (a full disk, an I/O error) raises :class:`~landbench.errors.StoreError` and leaves
the file as it is; a line cut short by a crash or a failed write (the file does not end with a
newline) is set aside (copied to ``results.jsonl.torn``) and truncated away the next time the store
is read or written where it can be written, and the runs it held are run again.
:meth:`ResultStore.check_writable` refuses a path that is a file, a read-only place or a full disk
before anything runs.

**Reading** never needs the lock file and never creates anything unless there is a torn last line
to repair, so a read-only folder can be ranked and reported (its torn last line, if any, is skipped
and left in place). :func:`read_jsonl` keeps every good record of a file and skips, with a warning
on stderr naming the file and line, a line that is not UTF-8, not JSON, not a JSON object, an object
without the identity fields of a run record (:data:`landbench.outcomes.IDENTITY_FIELDS`), and a
record of a schema newer than this landbench reads (never mixed in). Records of an older schema are
kept: the views leave them out with their own message. A truncated or non-gzip ``.gz`` file keeps
the records read before the fault. Past a few warnings per file, one line counts the rest.

**Duplicates.** One rule, :func:`first_per_key`, used by :func:`load_results` and so by ``rank``,
``report`` and resume: the first record of a key wins, except that a failed run
(:func:`landbench.outcomes.is_failed`) gives way to a later record of the same key that did not fail
(the job was retried).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import secrets
import sys
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from landbench.errors import StoreError
from landbench.outcomes import IDENTITY_FIELDS, RECORD_SCHEMA, is_failed, malformed, schema_of

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

RESULTS_FILE = "results.jsonl"
LOCK_FILE = RESULTS_FILE + ".lock"
TORN_FILE = RESULTS_FILE + ".torn"
#: Bad lines of one file reported one by one; the rest are counted in one more line.
WARNINGS_PER_FILE = 5

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class ResultStore:
    """The JSONL results of one output folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / RESULTS_FILE

    def records(self) -> list[dict[str, Any]]:
        """Every good stored record, in the order written (see :func:`read_jsonl`).

        A torn last line is repaired first (set aside in ``results.jsonl.torn``) where the folder can
        be written; in a read-only folder it is skipped with a warning and left in place. Reading
        takes no lock and creates no file."""
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"cannot read {self.path}: {_why(exc)}") from exc
        if size and not _ends_with_newline(self.path, size):
            # Torn, or an append in progress (the lock waits for it): repair where we can write.
            repaired = self._try_repair()
            size = size if repaired is None else repaired
        # Lines past ``size`` belong to appends made while we read; a line cut short that is still
        # there (a read-only folder) is skipped with its own warning.
        return list(_read_records(self.path, limit=size, store=True))

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records as lines, all in one write, and force them to disk.

        Raises :class:`~landbench.errors.StoreError` (one line) when the folder cannot be written
        or the write fails; a write cut short leaves a torn last line that the next read or append
        repairs."""
        data = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records).encode("utf-8")
        if not data:
            return
        stage = "open"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with self._lock() as locked:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | _O_CLOEXEC, 0o644)
                try:
                    if locked:  # a line torn by a crash: set aside before it swallows our first line
                        self._repair(fd)  # (only under the lock: unlocked, it may be a write in progress)
                    stage = "write"
                    _write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            if stage == "open":
                raise StoreError(f"cannot write results into {self.folder}: {_why(exc, self.folder)}") from exc
            raise StoreError(
                f"could not finish writing {self.path} ({_why(exc)}): the records of this write may be cut "
                f"short; the file was left as it is, and the next run into {self.folder} sets a cut-short last "
                f"line aside and runs its jobs again"
            ) from exc

    def check_writable(self) -> None:
        """Raise :class:`~landbench.errors.StoreError` (one line) unless results can be written into
        the folder: it is not a file, a probe file can be created and written there (a read-only
        place or a full disk fail here), and ``results.jsonl``, if there, can be appended to."""
        where = f"cannot write results into {self.folder}"
        if self.folder.exists() and not self.folder.is_dir():
            raise StoreError(f"{where}: it is a file, not a folder")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{where}: {_why(exc, self.folder)}") from exc
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"{where}: {self.path} is not a file")
        probe = self.folder / f".landbench-probe-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o644)
            try:
                _write_all(fd, b"\n" * 4096)
                os.fsync(fd)
            finally:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(probe)
        except OSError as exc:
            raise StoreError(f"{where}: {_why(exc)}") from exc
        if self.path.exists():
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | _O_CLOEXEC))
            except OSError as exc:
                raise StoreError(f"cannot append to {self.path}: {_why(exc)}") from exc

    @contextlib.contextmanager
    def _lock(self) -> Iterator[bool]:
        """An exclusive lock across processes, taken by writers only (appends and repairs); it
        creates the lock file. Yields False where ``fcntl`` does not exist (no lock is held)."""
        if fcntl is None:  # pragma: no cover - Windows
            yield False
            return
        fd = os.open(self.folder / LOCK_FILE, os.O_RDONLY | os.O_CREAT | _O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _try_repair(self) -> int | None:
        """Set aside a torn last line if the folder can be written, and return the file's size then
        (under the lock, so no append is half done); None where it cannot be written (nothing is
        created then: not even the lock file)."""
        try:
            fd = os.open(self.path, os.O_RDWR | _O_CLOEXEC)
        except OSError:
            return None
        try:
            with self._lock():
                self._repair(fd)
                return os.fstat(fd).st_size
        except OSError as exc:
            print(f"landbench: {self.path}: cannot set its cut-short last line aside ({_why(exc)})", file=sys.stderr)
            return None
        finally:
            os.close(fd)

    def _repair(self, fd: int) -> None:
        """If the file does not end with a newline, the last write was cut short: set that part
        aside in ``results.jsonl.torn`` and truncate it away. Called with the lock held."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        cut = _after_last_newline(fd, size)
        tail = os.pread(fd, size - cut, cut)
        torn = os.open(self.folder / TORN_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_CLOEXEC, 0o644)
        try:
            _write_all(torn, tail + b"\n")
            os.fsync(torn)
        finally:
            os.close(torn)
        os.ftruncate(fd, cut)
        os.fsync(fd)
        print(
            f"landbench: {self.path}: the last line was cut short (an interrupted write); "
            f"set it aside in {TORN_FILE}, its runs will run again",
            file=sys.stderr,
        )


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every good record of a JSONL file (gzipped if its name ends in ``.gz``), in order.

    Skipped, each with a warning on stderr naming the file and line: a line that is not valid UTF-8,
    not JSON, JSON that is not an object, an object without the identity fields of a run record, and
    a record of a newer schema than this landbench reads. A truncated or non-gzip ``.gz`` keeps the
    records read before the fault, with a warning. Nothing is ever deleted. Raises
    :class:`FileNotFoundError` for a missing file and :class:`~landbench.errors.StoreError` for one
    that cannot be read."""
    return _read_records(Path(path))


def first_per_key(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run once: the first record of each ``key`` wins, except that a failed record
    (:func:`landbench.outcomes.is_failed`) gives way to any later record of the same key (a retried
    job: the run that ran, or the latest failure, whose error is the one to read), in the place of the
    first. Records without a key are kept as they are."""
    out: list[dict[str, Any]] = []
    where: dict[Any, int] = {}
    for record in records:
        key = record.get("key")
        try:
            index = where.get(key) if key is not None else None
        except TypeError:  # an unhashable key: not something read_jsonl lets through
            out.append(record)
            continue
        if key is None:
            out.append(record)
        elif index is None:
            where[key] = len(out)
            out.append(record)
        elif is_failed(out[index]):
            out[index] = record
    return out


def load_results(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Records from result folders and/or ``.jsonl`` (or ``.jsonl.gz``) files, each run once
    (:func:`first_per_key` over all of them, in the order given)."""
    out: list[dict[str, Any]] = []
    for path in map(Path, paths):
        if path.is_dir():
            out.extend(ResultStore(path).records())
        elif path.exists():
            out.extend(read_jsonl(path))
        else:
            raise FileNotFoundError(f"no results at {str(path)!r}: give a results folder or a .jsonl file")
    return first_per_key(out)


# --- reading ------------------------------------------------------------------------------------


def _read_records(path: Path, limit: int | None = None, store: bool = False) -> Iterator[dict[str, Any]]:
    """The good records of ``path`` (see :func:`read_jsonl`), up to byte ``limit``; ``store``: the
    results file of a folder, whose last line without a newline is a torn write, not a record."""
    try:
        handle = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {_why(exc, path)}") from exc
    report = _Report(path)
    number = 0
    offset = 0
    try:
        with handle:
            try:
                for number, raw in enumerate(handle, 1):
                    offset += len(raw)
                    if limit is not None and offset > limit:
                        break  # appended while we read
                    if store and not raw.endswith(b"\n"):
                        report.skip(
                            number,
                            "torn",
                            "the last line, cut short by an interrupted write; the folder cannot be written, so it "
                            "is left in place (its runs are missing; a run into a writable copy runs them again)",
                        )
                        break
                    try:
                        record = _parse(raw, first=number == 1)
                    except _Bad as bad:
                        report.skip(number, bad.kind, bad.why)
                        continue
                    if record is not None:
                        yield record
            except EOFError:
                report.fault(
                    number + 1,
                    "the gzip data ends early (a truncated file): the records before this line are kept, "
                    "the rest of the file is lost",
                )
            except (gzip.BadGzipFile, zlib.error) as exc:
                if number == 0:
                    report.fault(None, f"not a gzip file ({exc}), though its name ends in .gz: no records read from it")
                else:
                    report.fault(number + 1, f"corrupt gzip data ({exc}): the records before this line are kept")
            except OSError as exc:
                raise StoreError(f"cannot read {path} (line {number + 1}): {_why(exc)}") from exc
    finally:
        report.close()


class _Bad(Exception):
    """A line that is not a record this landbench reads: ``kind`` (for the count) and why."""

    def __init__(self, kind: str, why: str):
        super().__init__(why)
        self.kind, self.why = kind, why


def _parse(raw: bytes, first: bool) -> dict[str, Any] | None:
    """The record of one line, None for a blank line; raises :class:`_Bad` for a line to skip."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1}"
        raise _Bad("not UTF-8", f"a line that is not valid UTF-8 ({where})") from None
    if first:
        text = text.removeprefix("\ufeff")
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Bad("not JSON", f"a line that is not JSON ({exc.msg}, column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # an integer too long to convert, nesting too deep
        raise _Bad("not JSON", f"a line that is not JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not isinstance(value, dict):
        raise _Bad("not an object", f"JSON that is not an object (a {_json_kind(value)}), not a run record")
    missing = [name for name in IDENTITY_FIELDS if name not in value]
    if missing:
        fields = f"field{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
        raise _Bad("not a record", f"an object without the run record {fields}")
    wrong = [name for name in IDENTITY_FIELDS if not _is_identity_value(value[name])]
    if wrong:
        kinds = ", ".join(f"{name} is a {_json_kind(value[name])}" for name in wrong)
        raise _Bad("not a record", f"a record whose {kinds}, not a string or an integer")
    schema = schema_of(value)
    wrong_kind = malformed(value) if schema <= RECORD_SCHEMA else None
    if wrong_kind:
        raise _Bad("not a record", f"a record whose {wrong_kind}")
    if schema > RECORD_SCHEMA:
        newer = f"a newer landbench (schema {schema}; this one reads {RECORD_SCHEMA})"
        raise _Bad("newer schema", f"a record written by {newer}: upgrade to read it")
    return value


def _is_identity_value(value: Any) -> bool:
    """An identity field holds a string or an integer (hashable, comparable), never a boolean."""
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _json_kind(value: Any) -> str:
    for kind, name in ((bool, "boolean"), (dict, "object"), (list, "list"), (str, "string"), (int, "number")):
        if isinstance(value, kind):
            return name
    return "null" if value is None else "number"


class _Report:
    """The warnings of one file: the first few bad lines one by one, then one line for the rest."""

    def __init__(self, path: Path):
        self.path = path
        self.counts: Counter[str] = Counter()
        self.shown = 0

    def skip(self, line: int, kind: str, why: str) -> None:
        self.counts[kind] += 1
        if self.shown < WARNINGS_PER_FILE:
            self.shown += 1
            _warn(f"{self.path}:{line}: skipping {why}")

    def fault(self, line: int | None, why: str) -> None:
        _warn(f"{self.path}{'' if line is None else f':{line}'}: {why}")

    def close(self) -> None:
        total = sum(self.counts.values())
        if total > self.shown:
            kinds = ", ".join(f"{count} {kind}" for kind, count in self.counts.most_common())
            _warn(f"{self.path}: skipped {total - self.shown} more bad lines ({total} in all: {kinds})")
        self.counts.clear()
        self.shown = 0


def _warn(message: str) -> None:
    print(f"landbench: {message}", file=sys.stderr)


# --- writing ------------------------------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    """One ``os.write`` of all of ``data`` (another only after a short write, where the disk is
    filling up and the next one fails)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # pragma: no cover - a regular file writes something or raises
            raise OSError(errno.EIO, "a write wrote nothing")
        view = view[written:]


def _ends_with_newline(path: Path, size: int) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(size - 1)
            return handle.read(1) == b"\n"
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {_why(exc, path)}") from exc


def _after_last_newline(fd: int, size: int, chunk: int = 1 << 16) -> int:
    """The offset just past the last newline before ``size`` (0 if there is none)."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        block = os.pread(fd, end - start, start)
        found = block.rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


_WHY = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EIO: "an input/output error",
}


def _why(exc: OSError, path: Path | None = None) -> str:
    """Why an OS call failed, in a few words."""
    if exc.errno in _WHY:
        return f"{_WHY[exc.errno]} ({exc.strerror})"
    if exc.errno == errno.EEXIST and path is not None:
        return "a file is in the way of the folder"
    if exc.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    if exc.errno == errno.EISDIR:
        return "it is a folder, not a file"
    return exc.strerror or str(exc)


__all__ = [
    "LOCK_FILE",
    "RESULTS_FILE",
    "TORN_FILE",
    "ResultStore",
    "first_per_key",
    "load_results",
    "read_jsonl",
]
