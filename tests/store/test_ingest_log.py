"""Log, then load: acknowledged evidence is on disk first, loaded once, and replayed after a crash."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ramplight.core.contract import validate_batch
from ramplight.core.errors import StoreError
from ramplight.store.duckdb import DuckDBStore
from ramplight.store.identity import IdentityIndex, admit_batch, build_index
from ramplight.store.log import LOADER_NICENESS, IngestLog, encode_items
from tests.core.builders import event_doc, exposure_doc
from tests.store.evidence import FLAGS, NOW, accepted, exposures

MakeLog = Callable[..., IngestLog]


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "log"


@pytest.fixture
def make_log(log_dir: Path, store: DuckDBStore) -> Iterator[MakeLog]:
    """Start an IngestLog over the test's store; every log is closed at the end."""
    started: list[IngestLog] = []

    def make(**options: Any) -> IngestLog:
        log = IngestLog(log_dir, store, **options)
        started.append(log)
        return log

    yield make
    for log in started:
        log.close()


def segment_dirs(log_dir: Path) -> list[str]:
    return sorted(p.name for p in log_dir.iterdir() if p.is_dir())


def unit_ids(store: DuckDBStore, kind: str = "exposures") -> list[str]:
    return [r[0] for r in store.query(f"SELECT unit_id FROM {kind} ORDER BY unit_id")]


def test_an_acknowledged_append_is_in_the_segment_file_before_it_is_loaded(
    make_log: MakeLog, log_dir: Path, store: DuckDBStore
) -> None:
    log = make_log(segment_seconds=3600)
    chunks = encode_items({"exposures": exposures("user-1", "user-2")})
    log.append(chunks, 2).result(timeout=30)
    (segment,) = log_dir.glob("*.open")
    assert (segment / "exposures.ndjson").read_bytes() == chunks["exposures"]
    assert store.count("exposures") == 0  # acknowledged means durable, not yet loaded


def test_flush_makes_everything_acknowledged_visible_in_the_store(
    make_log: MakeLog, log_dir: Path, store: DuckDBStore
) -> None:
    log = make_log(segment_seconds=3600)
    futures = [
        log.append(encode_items({"exposures": exposures("user-1")}), 1),
        log.append(encode_items({"events": accepted("events", event_doc(unit_id="user-1"))}), 1),
        log.append(
            encode_items(
                {
                    "evals": accepted(
                        "evals",
                        {
                            "ts": "2025-03-01T11:00:00Z",
                            "name": "helpful",
                            "score": 1.0,
                            "evaluator": "human",
                            "unit_id": "user-1",
                        },
                    )
                }
            ),
            1,
        ),
    ]
    for future in futures:
        future.result(timeout=30)
    log.flush()
    assert [store.count(k) for k in ("exposures", "events", "evals")] == [1, 1, 1]
    assert segment_dirs(log_dir) == []
    assert store.loaded_segments() == {f"{log.log_id}/000000000001.seg"}


def test_concurrent_appends_from_threads_are_all_loaded_exactly_once(
    make_log: MakeLog, log_dir: Path, store: DuckDBStore
) -> None:
    log = make_log(segment_items=100)
    batches = [exposures(*(f"user-{t}-{i}-{j}" for j in range(8))) for t in range(8) for i in range(25)]

    def send(items: list[Any]) -> None:
        log.append(encode_items({"exposures": items}), len(items)).result(timeout=60)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(send, batches))
    log.flush()
    expected = sorted(e.unit_id for batch in batches for e in batch)  # type: ignore[union-attr]
    assert unit_ids(store) == expected
    loads = store.query("SELECT count(*), sum(inserted) FROM ingest_segments")
    assert loads[0][0] >= 1600 // 100 // 2  # the log really rolled over to new segments
    assert loads[0][1] == 1600  # no item was loaded twice or skipped
    assert segment_dirs(log_dir) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness is per thread on Linux")
def test_the_loader_yields_the_cpu_to_acknowledging_and_the_writer_does_not(make_log: MakeLog) -> None:
    log = make_log()
    loader, writer = log._loader.native_id, log._writer.native_id
    assert loader is not None and writer is not None
    deadline = time.monotonic() + 10
    while os.getpriority(os.PRIO_PROCESS, loader) != LOADER_NICENESS:  # set as the thread starts
        assert time.monotonic() < deadline
    assert os.getpriority(os.PRIO_PROCESS, writer) == os.getpriority(os.PRIO_PROCESS, os.getpid())


def test_close_loads_what_is_left_and_stops_its_threads(log_dir: Path, store: DuckDBStore) -> None:
    def log_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name in ("ramplight-log", "ramplight-load")}

    before = log_threads()
    log = IngestLog(log_dir, store, segment_seconds=3600)
    assert len(log_threads() - before) == 2
    log.append(encode_items({"exposures": exposures("user-1")}), 1).result(timeout=30)
    log.close()
    assert store.count("exposures") == 1
    assert log_threads() == before


def test_a_retried_identical_item_is_stored_once(make_log: MakeLog, store: DuckDBStore) -> None:
    """Admission (the identity index) stands in front of the log: a retry before or after the
    load, and across a restart of the index, is a duplicate and never written again."""
    log = make_log()
    raw = msgspec.json.encode(exposure_doc(unit_id="user-1"))

    def ingest(index: IdentityIndex, *raws: bytes) -> dict[str, int]:
        validated = validate_batch({"exposures": list(raws)}, "production", FLAGS, NOW)
        admitted = admit_batch(index, validated)
        if admitted.keys:
            log.append(admitted.chunks(), len(admitted.keys)).result(timeout=30)
        return {"new": len(admitted.keys), "duplicates": admitted.duplicates["exposures"]}

    index = build_index(store, log.pending_files())
    assert ingest(index, raw, raw) == {"new": 1, "duplicates": 1}
    assert ingest(index, raw) == {"new": 0, "duplicates": 1}  # before the load
    log.flush()
    assert ingest(index, raw) == {"new": 0, "duplicates": 1}  # after the load
    assert ingest(build_index(store, log.pending_files()), raw) == {"new": 0, "duplicates": 1}  # restarted
    log.flush()
    assert unit_ids(store) == ["user-1"]


def test_two_logs_over_one_store_each_load_their_own_segments(tmp_path: Path, store: DuckDBStore) -> None:
    """Two servers, each with its own log, sharing one evidence database: both number their
    segments from 1, and neither's segment may be taken for the other's already-loaded one."""
    first = IngestLog(tmp_path / "a.log", store, segment_seconds=3600)
    second = IngestLog(tmp_path / "b.log", store, segment_seconds=3600)
    try:
        assert first.log_id != second.log_id
        first.append(encode_items({"exposures": exposures("user-a")}), 1).result(timeout=30)
        first.flush()
        second.append(encode_items({"exposures": exposures("user-b")}), 1).result(timeout=30)
        second.flush()
        assert unit_ids(store) == ["user-a", "user-b"]
        assert store.loaded_segments() == {
            f"{first.log_id}/000000000001.seg",
            f"{second.log_id}/000000000001.seg",
        }
    finally:
        first.close()
        second.close()


def test_a_log_keeps_its_id_across_restarts_and_refuses_a_damaged_one(
    make_log: MakeLog, log_dir: Path, store: DuckDBStore
) -> None:
    log = make_log()
    log.append(encode_items({"exposures": exposures("user-1")}), 1).result(timeout=30)
    log.close()
    again = make_log()
    assert again.log_id == log.log_id == (log_dir / "log-id").read_text().strip()
    again.append(encode_items({"exposures": exposures("user-2")}), 1).result(timeout=30)
    again.close()
    # Numbering goes on after what this log already loaded: no name is reused.
    assert store.loaded_segments() == {f"{log.log_id}/000000000001.seg", f"{log.log_id}/000000000002.seg"}
    (log_dir / "log-id").write_text("not-an-id\n")
    with pytest.raises(StoreError, match="log-id: not a log id"):
        IngestLog(log_dir, store)


def test_a_segment_loaded_before_log_ids_is_not_loaded_again_after_the_upgrade(
    make_log: MakeLog, log_dir: Path, store: DuckDBStore, write_segment: Callable[..., dict[str, Path]]
) -> None:
    """A process stopped between loading 000000000001.seg (recorded by its bare name, before log
    ids) and deleting it: the upgraded log neither loads it twice nor reuses its number."""
    files = write_segment(exposures=exposures("user-1"))
    assert store.load_segment("000000000001.seg", files) == 1  # as the old log recorded it
    left = log_dir / "000000000001.seg"
    left.mkdir(parents=True)
    (left / "exposures.ndjson").write_bytes(files["exposures"].read_bytes())
    log = make_log()
    log.append(encode_items({"exposures": exposures("user-2")}), 1).result(timeout=30)
    log.flush()
    assert unit_ids(store) == ["user-1", "user-2"]  # user-1 once
    assert store.loaded_segments() == {"000000000001.seg", f"{log.log_id}/000000000002.seg"}
    assert segment_dirs(log_dir) == []


# -- recovery -----------------------------------------------------------------------------


def ndjson(items: list[Any]) -> bytes:
    return msgspec.json.Encoder().encode_lines(items)


def test_segments_left_by_a_crash_are_trimmed_sealed_and_loaded_on_start(
    make_log: MakeLog, log_dir: Path, store: DuckDBStore
) -> None:
    sealed = log_dir / "000000000004.seg"
    sealed.mkdir(parents=True)
    (sealed / "events.ndjson").write_bytes(
        ndjson(accepted("events", event_doc(unit_id="a"), event_doc(unit_id="b")))
    )
    torn = log_dir / "000000000005.open"
    torn.mkdir()
    complete = ndjson(exposures("user-1", "user-2"))
    (torn / "exposures.ndjson").write_bytes(complete + b'{"event_id":"torn","ts":"2025-03-01T1')
    (log_dir / "README").write_text("not a segment")

    log = make_log()
    log.flush()
    assert unit_ids(store) == ["user-1", "user-2"]
    assert unit_ids(store, "events") == ["a", "b"]
    assert store.loaded_segments() == {f"{log.log_id}/000000000004.seg", f"{log.log_id}/000000000005.seg"}
    assert segment_dirs(log_dir) == []

    log.append(encode_items({"exposures": exposures("user-3")}), 1).result(timeout=30)
    log.flush()
    assert unit_ids(store) == ["user-1", "user-2", "user-3"]
    assert f"{log.log_id}/000000000006.seg" in store.loaded_segments()


def test_an_open_segment_holding_only_a_torn_line_recovers_to_nothing(
    make_log: MakeLog, log_dir: Path, store: DuckDBStore
) -> None:
    torn = log_dir / "000000000001.open"
    torn.mkdir(parents=True)
    (torn / "exposures.ndjson").write_bytes(b'{"event_id":"torn","ts":"2025-')
    make_log().flush()
    assert store.count("exposures") == 0
    assert segment_dirs(log_dir) == []


CRASHING_WRITER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from ramplight.store.duckdb import DuckDBStore
    from ramplight.store.log import IngestLog

    log = IngestLog(Path(sys.argv[1]), DuckDBStore(":memory:", allowed_directories=[sys.argv[1]]), segment_seconds=3600)
    data = sys.stdin.buffer.read()
    log.append({"exposures": data}, data.count(b"\\n")).result(timeout=30)
    print("acknowledged", flush=True)
    os._exit(0)  # die without sealing, as kill -9 would
    """
)


def test_items_acknowledged_before_a_process_crash_are_loaded_by_the_next_start(
    make_log: MakeLog, log_dir: Path, store: DuckDBStore
) -> None:
    data = ndjson(exposures(*(f"user-{i}" for i in range(50))))
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(log_dir)], input=data, capture_output=True, timeout=120
    )
    assert done.stdout == b"acknowledged\n", done.stderr.decode()
    (segment,) = log_dir.glob("*.open")
    with (segment / "exposures.ndjson").open(
        "ab"
    ) as handle:  # a torn write of a later, unacknowledged append
        handle.write(b'{"event_id":"never-acked","ts":"2025-03-01T11:')

    make_log().flush()
    assert unit_ids(store) == sorted(f"user-{i}" for i in range(50))


def test_a_restarted_log_never_reuses_a_loaded_segment_name(log_dir: Path, store: DuckDBStore) -> None:
    first = IngestLog(log_dir, store)
    first.append(encode_items({"exposures": exposures("before-restart")}), 1).result(timeout=30)
    first.close()
    second = IngestLog(log_dir, store)
    try:
        second.append(encode_items({"exposures": exposures("after-restart")}), 1).result(timeout=30)
        second.flush()
        assert unit_ids(store) == ["after-restart", "before-restart"]
    finally:
        second.close()


def test_a_segment_that_cannot_load_stays_on_disk_and_does_not_hold_up_later_ones(
    make_log: MakeLog, log_dir: Path, store: DuckDBStore
) -> None:
    log_dir.mkdir(parents=True)
    poisoned = log_dir / "000000000001.seg"
    poisoned.mkdir()
    (poisoned / "events.ndjson").write_bytes(b'{"event_id": "x", "ts": "not a time"}\n')
    log = make_log(segment_seconds=3600)
    log.append(encode_items({"exposures": exposures("user-1", "user-2")}), 2).result(timeout=30)
    with pytest.raises(Exception, match=r"not a time"):
        log.flush(timeout=5)
    assert unit_ids(store) == ["user-1", "user-2"]  # the later segment loaded anyway
    assert poisoned.exists()  # kept for the next start or an operator
