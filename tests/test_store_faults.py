"""Results files that are damaged, read-only, full or written by two processes at once: the good
records are used, each bad line is named on stderr, and nothing is lost or stored twice."""

from __future__ import annotations

import errno
import gzip
import json
import multiprocessing
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import landbench
import landbench.store
from landbench.cli import main
from landbench.errors import StoreError
from landbench.outcomes import IDENTITY_FIELDS, RECORD_SCHEMA, is_failed
from landbench.store import (
    LOCK_FILE,
    RESULTS_FILE,
    TORN_FILE,
    WARNINGS_PER_FILE,
    ResultStore,
    first_per_key,
    load_results,
    read_jsonl,
)

# --- good records and bad bytes -----------------------------------------------------------------


@pytest.fixture(scope="module")
def runs() -> list[dict[str, Any]]:
    """Real run records: two optimizers on two problems, three seeds each (12 records, 4 scenarios x optimizer)."""
    out: list[dict[str, Any]] = []
    for problem in ("quadratic(dim=4, condition=10.0)", "saddle(dim=4)"):
        for optimizer in ("sgd(lr=0.1)", "sgd(lr=1e-06)"):
            out += landbench.run(problem, optimizer, seeds=3, steps=100)
    return out


def record(key: str, **extra: Any) -> dict[str, Any]:
    """A small record that holds the identity fields of a run (whatever they are) and ``extra``."""
    fields: dict[str, Any] = {name: f"{name} of {key}" for name in IDENTITY_FIELDS}
    return fields | {"key": key, "seed": 0, "schema": RECORD_SCHEMA} | extra


def failed(run: dict[str, Any]) -> dict[str, Any]:
    """The record of the same run had its job raised: identity fields and 'failed', no outcome."""
    return {name: run[name] for name in IDENTITY_FIELDS} | {"schema": RECORD_SCHEMA, "failed": "RuntimeError: boom"}


def line(rec: dict[str, Any]) -> bytes:
    return (json.dumps(rec) + "\n").encode()


def lines(records: list[dict[str, Any]]) -> bytes:
    return b"".join(map(line, records))


def warnings_of(err: str) -> list[str]:
    return [text for text in err.splitlines() if text.startswith("landbench: ")]


def read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make ``folder`` behave as a read-only mount for this process: opening anything in it for
    writing or creating fails with EROFS (root ignores mode bits, so chmod cannot be used here)."""
    real_open = os.open
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    inside = str(folder.resolve())

    def guarded(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & writing and str(Path(path).resolve()).startswith(inside):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --- read_jsonl: each bad line is skipped and named ---------------------------------------------


def test_each_kind_of_bad_line_is_skipped_with_one_warning_naming_the_file_and_line(
    runs: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    good = runs[:3]
    newer = runs[3] | {"key": "from-the-future", "schema": RECORD_SCHEMA + 1}
    older = runs[4] | {"key": "from-the-past", "schema": RECORD_SCHEMA - 1}
    not_utf8 = line(runs[5]).replace(b'"sgd', b'"\xffsgd', 1)  # valid JSON around one bad byte
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        line(good[0])
        + not_utf8  # 2
        + line(good[1])
        + b"not json at all\n"  # 4
        + b"[1, 2, 3]\n"  # 5
        + b'{"key": "abc", "x": 1}\n'  # 6
        + line(newer)  # 7
        + b"\n"  # 8: blank lines are not records and not faults
        + line(good[2])
        + line(older)  # 10: kept (the views leave it out with their own message)
    )
    assert list(read_jsonl(path)) == [good[0], good[1], good[2], older]
    warned = warnings_of(capsys.readouterr().err)
    others = [name for name in IDENTITY_FIELDS if name != "key"]
    column = not_utf8.index(b"\xff") + 1
    assert warned == [
        f"landbench: {path}:2: skipping a line that is not valid UTF-8 (byte 0xff at column {column})",
        f"landbench: {path}:4: skipping a line that is not JSON (Expecting value, column 1)",
        f"landbench: {path}:5: skipping JSON that is not an object (a list), not a run record",
        f"landbench: {path}:6: skipping an object without the run record fields {', '.join(others)}",
        f"landbench: {path}:7: skipping a record written by a newer landbench (schema {RECORD_SCHEMA + 1}; "
        f"this one reads {RECORD_SCHEMA}): upgrade to read it",
    ]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (b'"a string"\n', "JSON that is not an object (a string)"),
        (b"null\n", "JSON that is not an object (a null)"),
        (b"12\n", "JSON that is not an object (a number)"),
        (b'{"key": ["a"], "problem": "p", "optimizer": "o", "seed": 0}\n', "a record whose key is a list"),
        (b'{"key": "k", "problem": "p", "optimizer": "o", "seed": true}\n', "a record whose seed is a boolean"),
        (b"[" * 100_000 + b"\n", "a line that is not JSON (RecursionError"),
        (b'{"key": "k"\n', "a line that is not JSON (Expecting ',' delimiter"),
    ],
)
def test_odd_lines_are_skipped_too(text: bytes, why: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_bytes(line(record("a")) + text + line(record("b")))
    assert [r["key"] for r in read_jsonl(path)] == ["a", "b"]
    (warned,) = warnings_of(capsys.readouterr().err)
    assert warned.startswith(f"landbench: {path}:2: skipping {why}")


def test_a_byte_order_mark_and_windows_line_ends_are_read(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + line(record("a")).replace(b"\n", b"\r\n") + line(record("b")))
    assert [r["key"] for r in read_jsonl(path)] == ["a", "b"]
    assert capsys.readouterr().err == ""


def test_a_file_of_many_bad_lines_prints_a_few_warnings_and_counts_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "garbage.jsonl"
    bad = [b"garbage\n"] * 3000 + [line(record("new", schema=RECORD_SCHEMA + 1))] * 500
    path.write_bytes(line(record("first")) + b"".join(bad) + line(record("last")))
    assert [r["key"] for r in read_jsonl(path)] == ["first", "last"]
    warned = warnings_of(capsys.readouterr().err)
    assert len(warned) == WARNINGS_PER_FILE + 1
    assert all(f"{path}:{n + 2}: skipping a line that is not JSON" in warned[n] for n in range(WARNINGS_PER_FILE))
    assert warned[-1] == (
        f"landbench: {path}: skipped {3500 - WARNINGS_PER_FILE} more bad lines "
        f"(3500 in all: 3000 not JSON, 500 newer schema)"
    )


def test_a_truncated_gz_keeps_the_records_before_the_fault(
    runs: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    many = [r | {"key": f"{r['key']}-{n}"} for n in range(20) for r in runs]  # 240 records
    packed = gzip.compress(lines(many))
    path = tmp_path / "results.jsonl.gz"
    path.write_bytes(packed[: len(packed) * 2 // 3])  # a copy cut short
    kept = list(read_jsonl(path))
    assert 0 < len(kept) < len(many)
    assert kept == many[: len(kept)]
    (warned,) = warnings_of(capsys.readouterr().err)
    assert warned == (
        f"landbench: {path}:{len(kept) + 1}: the gzip data ends early (a truncated file): the records before this "
        "line are kept, the rest of the file is lost"
    )


def test_a_gz_whose_data_is_corrupt_keeps_the_records_before_the_fault(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    packed = bytearray(gzip.compress(lines([record(str(n)) for n in range(100)])))
    packed[-8] ^= 0xFF  # the CRC of the trailer
    path = tmp_path / "crc.jsonl.gz"
    path.write_bytes(bytes(packed))
    assert len(list(read_jsonl(path))) <= 100
    (warned,) = warnings_of(capsys.readouterr().err)
    assert warned.startswith(f"landbench: {path}:") and "corrupt gzip data" in warned


def test_a_file_named_gz_that_is_not_gzip_is_named_and_skipped(
    runs: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "plain.jsonl.gz"
    path.write_bytes(lines(runs))
    other = tmp_path / "other.jsonl"
    other.write_bytes(lines(runs[:2]))
    assert load_results([path, other]) == runs[:2]
    (warned,) = warnings_of(capsys.readouterr().err)
    assert warned.startswith(f"landbench: {path}: not a gzip file (")
    assert warned.endswith("though its name ends in .gz: no records read from it")


def test_a_newer_schema_is_never_mixed_in(runs: list[dict[str, Any]], tmp_path: Path, capsys) -> None:
    ResultStore(tmp_path).append([r | {"schema": RECORD_SCHEMA + 1} for r in runs[:4]] + runs[4:])
    assert load_results([tmp_path]) == runs[4:]
    warned = warnings_of(capsys.readouterr().err)
    assert len(warned) == 4 and all("written by a newer landbench" in text for text in warned)


def test_a_missing_path_is_a_file_not_found_error_and_an_unreadable_one_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no results at"):
        load_results([tmp_path / "missing"])
    with pytest.raises(FileNotFoundError):
        list(read_jsonl(tmp_path / "missing.jsonl"))
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(StoreError, match="^cannot read .*dir.jsonl: it is a folder, not a file$"):
        list(read_jsonl(tmp_path / "dir.jsonl"))


# --- the duplicate rule -------------------------------------------------------------------------


def test_first_per_key_keeps_the_first_record_unless_it_failed_and_was_retried(
    runs: list[dict[str, Any]],
) -> None:
    a, b, c = runs[:3]
    twin = a | {"final_loss": -1.0}  # the same key, run again (two sweeps into one folder)
    keyless = {"note": "no key"}
    assert first_per_key([a, b, twin, keyless, keyless]) == [a, b, keyless, keyless]
    # A failed job that was retried: the record that ran takes the failed one's place.
    assert first_per_key([failed(a), b, a]) == [a, b]
    # Retried and failed again: the latest failure is the one to read (its error may have changed).
    assert first_per_key([failed(a), failed(a) | {"failed": "again"}, b]) == [failed(a) | {"failed": "again"}, b]
    assert first_per_key([a, failed(a), c]) == [a, c]  # a later failure never replaces a run that ran
    assert is_failed(first_per_key([failed(c)])[0])


def test_load_results_applies_the_rule_across_folders_and_files(runs: list[dict[str, Any]], tmp_path: Path) -> None:
    ResultStore(tmp_path / "a").append([failed(runs[0]), runs[1]])
    loose = tmp_path / "b.jsonl"
    loose.write_bytes(lines([runs[0], runs[1] | {"final_loss": -1.0}, runs[2]]))
    assert load_results([tmp_path / "a", loose]) == [runs[0], runs[1], runs[2]]
    assert load_results([tmp_path / "a", tmp_path / "a"]) == [failed(runs[0]), runs[1]]


# --- torn last lines, read-only folders ---------------------------------------------------------


def test_reading_a_healthy_folder_creates_nothing(runs: list[dict[str, Any]], tmp_path: Path) -> None:
    (tmp_path / RESULTS_FILE).write_bytes(lines(runs))
    assert ResultStore(tmp_path).records() == runs
    assert [p.name for p in tmp_path.iterdir()] == [RESULTS_FILE]  # no lock file: reading never needs one


def test_a_read_only_folder_is_read_without_a_lock_file(
    runs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / RESULTS_FILE).write_bytes(lines(runs))
    before = listing(tmp_path)
    read_only(monkeypatch, tmp_path)
    assert ResultStore(tmp_path).records() == runs
    assert load_results([tmp_path, tmp_path / RESULTS_FILE]) == runs
    assert listing(tmp_path) == before
    assert capsys.readouterr().err == ""


def test_a_torn_last_line_in_a_read_only_folder_is_skipped_and_left_in_place(
    runs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / RESULTS_FILE).write_bytes(lines(runs[:5]) + line(runs[5])[:-1])  # even a whole record
    before = listing(tmp_path)
    read_only(monkeypatch, tmp_path)
    assert ResultStore(tmp_path).records() == runs[:5]
    assert listing(tmp_path) == before  # not repaired, no lock file, no .torn file
    (warned,) = warnings_of(capsys.readouterr().err)
    assert warned.startswith(f"landbench: {tmp_path / RESULTS_FILE}:6: skipping the last line, cut short by an ")
    assert "the folder cannot be written, so it is left in place" in warned


def test_a_torn_last_line_in_a_read_only_results_file_is_skipped_too(
    runs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / RESULTS_FILE
    path.write_bytes(lines(runs[:5]) + line(runs[5])[:40])
    before = listing(tmp_path)
    real_open = os.open

    def file_read_only(target: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(target) == path and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(target))
        return real_open(target, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", file_read_only)
    assert ResultStore(tmp_path).records() == runs[:5]
    assert listing(tmp_path) == before  # the folder could be written, but no lock file was made
    assert "cut short" in capsys.readouterr().err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores mode bits")
def test_a_chmod_read_only_folder_is_read_and_ranked(runs: list[dict[str, Any]], tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / RESULTS_FILE).write_bytes(lines(runs) + b'{"torn')
    folder.chmod(0o555)
    try:
        assert ResultStore(folder).records() == runs
        with pytest.raises(StoreError, match="permission denied"):
            ResultStore(folder).check_writable()
        with pytest.raises(StoreError, match="cannot write results into"):
            ResultStore(folder).append(runs[:1])
        ranked = CliRunner().invoke(main, ["rank", str(folder)])
        assert ranked.exit_code == 0, ranked.output
        assert sorted(p.name for p in folder.iterdir()) == [RESULTS_FILE]
    finally:
        folder.chmod(0o755)


def test_a_torn_last_line_in_a_writable_folder_is_set_aside_on_reading(
    runs: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / RESULTS_FILE
    path.write_bytes(lines(runs[:5]) + line(runs[5])[:40])
    assert ResultStore(tmp_path).records() == runs[:5]
    assert path.read_bytes() == lines(runs[:5])
    assert (tmp_path / TORN_FILE).read_bytes() == line(runs[5])[:40] + b"\n"
    assert "the last line was cut short" in capsys.readouterr().err
    assert ResultStore(tmp_path).records() == runs[:5]  # once
    assert capsys.readouterr().err == ""


def test_a_file_that_is_only_a_torn_line_reads_as_empty(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / RESULTS_FILE).write_bytes(b'{"key": "a", "pro')
    assert ResultStore(tmp_path).records() == []
    assert (tmp_path / RESULTS_FILE).read_bytes() == b""
    assert "cut short" in capsys.readouterr().err


def test_an_append_after_a_crash_sets_the_torn_line_aside_first(runs: list[dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    path.write_bytes(lines(runs[:2]) + line(runs[2])[:40])
    ResultStore(tmp_path).append(runs[3:5])  # without reading first: the new first line is not glued to the torn one
    assert path.read_bytes() == lines(runs[:2] + runs[3:5])
    assert (tmp_path / TORN_FILE).read_bytes() == line(runs[2])[:40] + b"\n"


# --- appends: atomic, concurrent, and failing cleanly -------------------------------------------


def test_an_append_is_one_write(runs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ResultStore(tmp_path)
    store.append(runs[:1])
    real_write = os.write
    sizes: list[int] = []

    def counted(fd: int, data: Any) -> int:
        sizes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counted)
    store.append(runs[1:])
    assert sizes == [len(lines(runs[1:]))]
    assert store.records() == runs
    assert (tmp_path / LOCK_FILE).exists()  # writing creates the lock file (reading never does)


def _appender(folder: str, writer: int, batches: int, locked: bool) -> None:
    """One of two processes appending multi-line batches of up to ~100 kB into one file."""
    if not locked:
        landbench.store.fcntl = None  # O_APPEND and one write per batch alone must keep lines whole
    store = ResultStore(folder)
    rng = random.Random(writer)
    for batch in range(batches):
        size = 1 + rng.randrange(5)
        store.append(record(f"{writer}-{batch}-{i}", pad="x" * rng.randrange(20_000)) for i in range(size))


@pytest.mark.parametrize("locked", [True, False], ids=["flock", "no-flock"])
def test_two_processes_appending_at_once_neither_interleave_nor_clobber(tmp_path: Path, locked: bool) -> None:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_appender, args=(str(tmp_path), w, 150, locked)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
        assert worker.exitcode == 0
    raw = (tmp_path / RESULTS_FILE).read_bytes()
    assert raw.endswith(b"\n")
    keys = [json.loads(text)["key"] for text in raw.splitlines()]  # every line parses
    expected = []
    for writer in range(2):
        rng = random.Random(writer)
        for batch in range(150):
            size = 1 + rng.randrange(5)
            expected += [f"{writer}-{batch}-{i}" for i in range(size) if rng.randrange(20_000) >= 0]
    assert Counter(keys) == Counter(expected)  # each record once
    # Each batch is contiguous: the lines of one append were one write.
    batches = [key.rsplit("-", 1)[0] for key in keys]
    assert sum(1 for i in range(1, len(batches)) if batches[i] != batches[i - 1]) == 300 - 1


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_an_append_that_fails_midway_raises_one_line_and_the_next_run_repairs_the_file(
    runs: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    code: int,
) -> None:
    store = ResultStore(tmp_path)
    store.append(runs[:4])
    real_write = os.write
    calls = {"n": 0}

    def failing(fd: int, data: Any) -> int:  # half the batch reaches the disk, then the disk fails
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "write", failing)
    with pytest.raises(StoreError) as raised:
        store.append(runs[4:8])
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"could not finish writing {tmp_path / RESULTS_FILE} (")
    assert ("the disk is full" if code == errno.ENOSPC else "an input/output error") in message
    assert "the file was left as it is, and the next run into" in message
    monkeypatch.setattr(os, "write", real_write)
    half = lines(runs[4:8])[: len(lines(runs[4:8])) // 2]
    assert (tmp_path / RESULTS_FILE).read_bytes() == lines(runs[:4]) + half
    whole = half.count(b"\n")  # lines of the batch that did reach the disk whole are kept
    assert store.records() == runs[: 4 + whole]
    assert "the last line was cut short" in capsys.readouterr().err
    store.append(runs[4 + whole :])  # the resumed run stores what is missing
    assert store.records() == runs
    assert all(json.loads(text) for text in (tmp_path / RESULTS_FILE).read_bytes().splitlines())


def test_an_append_whose_fsync_fails_raises_one_line(
    runs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(StoreError, match="could not finish writing .*an input/output error"):
        ResultStore(tmp_path).append(runs[:2])


def test_an_append_into_a_read_only_folder_or_a_file_raises_one_line(
    runs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(StoreError, match="cannot write results into .*a_file: a file is in the way of the folder"):
        ResultStore(tmp_path / "a_file").append(runs[:1])
    with pytest.raises(StoreError, match="a part of the path is a file, not a folder"):
        ResultStore(tmp_path / "a_file" / "below").append(runs[:1])
    folder = tmp_path / "ro"
    folder.mkdir()
    read_only(monkeypatch, folder)
    with pytest.raises(StoreError, match=r"cannot write results into .*ro: the file system is read-only"):
        ResultStore(folder).append(runs[:1])
    assert list(folder.iterdir()) == []


# --- check_writable: refused before anything runs -----------------------------------------------


def test_check_writable_accepts_a_new_or_existing_folder_and_leaves_no_probe(
    runs: list[dict[str, Any]], tmp_path: Path
) -> None:
    ResultStore(tmp_path / "new" / "deeper").check_writable()
    assert list((tmp_path / "new" / "deeper").iterdir()) == []
    ResultStore(tmp_path / "old").append(runs[:1])
    before = listing(tmp_path / "old")
    ResultStore(tmp_path / "old").check_writable()
    assert listing(tmp_path / "old") == before


def test_check_writable_refuses_a_file_and_a_folder_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(StoreError, match=r"^cannot write results into .*a_file: it is a file, not a folder$"):
        ResultStore(tmp_path / "a_file").check_writable()
    with pytest.raises(StoreError, match=r"a_file/below: a part of the path is a file, not a folder$"):
        ResultStore(tmp_path / "a_file" / "below").check_writable()
    (tmp_path / "odd" / RESULTS_FILE).mkdir(parents=True)
    with pytest.raises(StoreError, match="is not a file"):
        ResultStore(tmp_path / "odd").check_writable()


@pytest.mark.parametrize(
    ("code", "why"),
    [(errno.EROFS, "the file system is read-only"), (errno.EACCES, "permission denied")],
)
def test_check_writable_refuses_a_read_only_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, why: str
) -> None:
    real_open = os.open

    def refused(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refused)
    with pytest.raises(StoreError, match=f"^cannot write results into {tmp_path}: {why}") as raised:
        ResultStore(tmp_path).check_writable()
    assert "\n" not in str(raised.value)


def test_check_writable_refuses_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StoreError, match=f"^cannot write results into {tmp_path}: the disk is full"):
        ResultStore(tmp_path).check_writable()
    assert list(tmp_path.iterdir()) == []  # the probe is removed


def test_check_writable_refuses_a_results_file_that_cannot_be_appended_to(
    runs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ResultStore(tmp_path).append(runs[:1])
    real_open = os.open

    def file_read_only(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(path).name == RESULTS_FILE and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", file_read_only)
    with pytest.raises(StoreError, match=f"^cannot append to {tmp_path / RESULTS_FILE}: permission denied"):
        ResultStore(tmp_path).check_writable()


# --- landbench rank on damaged and read-only folders --------------------------------------------


def _standings(output: str) -> list[Any]:
    return json.loads(output)["standings"]


def test_rank_on_a_folder_with_bad_lines_ranks_the_good_records_and_warns(
    runs: list[dict[str, Any]], tmp_path: Path
) -> None:
    clean = tmp_path / "clean"
    ResultStore(clean).append(runs)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / RESULTS_FILE).write_bytes(
        b"\xff\xfe\n"
        + lines(runs[:6])
        + b"{not json\n"
        + line(runs[0] | {"final_loss": 123.0})  # a repeat of a key: the first wins
        + line(runs[1] | {"key": "newer", "schema": RECORD_SCHEMA + 1})
        + lines(runs[6:])
        + b'{"key": "torn", "proble'
    )
    expected = CliRunner().invoke(main, ["rank", str(clean), "--json"])
    assert expected.exit_code == 0, expected.output
    result = CliRunner().invoke(main, ["rank", str(damaged), "--json"])
    assert result.exit_code == 0, result.output
    assert _standings(result.stdout) == _standings(expected.stdout)
    path = damaged / RESULTS_FILE
    warned = warnings_of(result.stderr)
    assert f"landbench: {path}:1: skipping a line that is not valid UTF-8 (byte 0xff at column 1)" in warned
    why = "Expecting property name enclosed in double quotes, column 2"
    assert f"landbench: {path}:8: skipping a line that is not JSON ({why})" in warned
    assert any(
        text.startswith(f"landbench: {path}:10: skipping a record written by a newer landbench") for text in warned
    )
    assert any("the last line was cut short" in text for text in warned)  # a writable folder: repaired


def test_rank_on_a_read_only_folder_works_and_creates_nothing(
    runs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ResultStore(tmp_path / "clean").append(runs)
    expected = CliRunner().invoke(main, ["rank", str(tmp_path / "clean"), "--json"])
    folder = tmp_path / "mounted"
    folder.mkdir()
    (folder / RESULTS_FILE).write_bytes(lines(runs) + b"not json\n" + line(runs[0])[:-1])
    before = listing(folder)
    read_only(monkeypatch, folder)
    result = CliRunner().invoke(main, ["rank", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    assert _standings(result.stdout) == _standings(expected.stdout)
    warned = warnings_of(result.stderr)
    path = folder / RESULTS_FILE
    assert f"landbench: {path}:13: skipping a line that is not JSON (Expecting value, column 1)" in warned
    assert any(f"{folder / RESULTS_FILE}:14: skipping the last line, cut short" in text for text in warned)
    text = CliRunner().invoke(main, ["rank", str(folder)])
    assert text.exit_code == 0 and "2 optimizers on 2 scenarios" in text.stdout
    assert listing(folder) == before


def test_rank_refuses_a_folder_of_only_newer_records_saying_so(runs: list[dict[str, Any]], tmp_path: Path) -> None:
    ResultStore(tmp_path).append([r | {"schema": RECORD_SCHEMA + 1} for r in runs])
    result = CliRunner().invoke(main, ["rank", str(tmp_path)])
    assert result.exit_code == 2
    assert "no scored runs in" in result.stderr
    warned = warnings_of(result.stderr)
    assert len(warned) == WARNINGS_PER_FILE + 1 and "newer landbench" in warned[0]


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("final_loss", "abc", "final_loss is a string, not a number"),
        ("loss_gap", [1], "loss_gap is a list"),
        ("sharpness", True, "sharpness is a boolean"),
        ("targets", [], "targets is not a non-empty list of numbers"),
        ("targets", ["x"], "targets is not a non-empty list of numbers"),
        ("reach_evals", [1.5] * 10, "reach_evals is not a list of integers or nulls"),
        ("first_hit_evals", [1, 2], "first_hit_evals has 2 values for 10 targets"),
        ("grad_evals", "100", "grad_evals is a string"),
        ("family", ["quadratic"], "family is a list"),
        ("steps", 1.5, "steps is a number, not an integer"),
        ("noise", None, "noise is null"),
        ("instance", "0", "instance is a string"),
        ("settings", [], "settings is a list"),
        ("wall_s", "fast", "wall_s is a string"),
        ("optimizer", 5, "optimizer is an integer, not a string"),
        ("failed", ["x"], "failed is a list"),
        ("diverged", 0, "diverged is an integer, not a boolean"),
    ],
)
def test_a_record_with_a_field_of_the_wrong_kind_is_skipped_and_the_rest_ranked(
    runs: list[dict[str, Any]], tmp_path: Path, field: str, value: Any, why: str
) -> None:
    bad = dict(runs[0]) | {field: value}
    (tmp_path / RESULTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in [bad, *runs[1:]]))
    result = CliRunner().invoke(main, ["rank", str(tmp_path), "--bootstrap", "10"])
    assert result.exit_code == 0, result.output
    assert f"results.jsonl:1: skipping a record whose {why}" in result.stderr
    assert "Traceback" not in result.output
    status = CliRunner().invoke(main, ["status", str(tmp_path)])
    assert status.exit_code == 0 and "11 runs done" in status.output
