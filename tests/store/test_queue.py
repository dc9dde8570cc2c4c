"""The queue state machine: leases, attempts (counted at claim, refunded when handed back), backoff, reaping."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from destill3d_tui.engine.errors import DownloadError, ExtractionError, IsolationError, describe
from destill3d_tui.engine.queue import Queue, QueueEntry, make_owner
from destill3d_tui.engine.store.db import Store, utcnow


def entries(n: int, priority: int = 0) -> list[QueueEntry]:
    return [QueueEntry(model_id=f"test:{priority}:{i}", platform="test", source_url=f"https://x/{i}",
                       priority=priority, metadata={"title": f"item {i}"}) for i in range(n)]  # fmt: skip


@pytest.fixture
def queue(db_url: str) -> Queue:
    return Queue(Store(db_url), max_retries=3, lease_seconds=60, retry_backoff_s=0.2)


def test_add_is_idempotent_and_counts_every_stage(queue: Queue) -> None:
    ids = queue.add_entries(entries(3))
    assert queue.add_entries(entries(3)) == ids
    counts = queue.counts()
    assert counts == {"queued": 3, "acquired": 0, "extracted": 0, "classified": 0, "stored": 0, "failed": 0}
    row = queue.get(ids[1])
    assert row.title == "item 1" and row.stage == "queued" and row.retry_count == 0 and row.max_retries == 3


def test_bulk_add_is_one_batch_idempotent_and_keeps_existing_rows(queue: Queue) -> None:
    many = entries(2_345)  # several insert chunks
    first = queue.add_entries(many[:700])
    queue.claim("w", 1)  # an existing row that moved on must keep its state
    mixed = [*many, many[3], many[1_000]]  # repeats inside one call map to one row
    ids = queue.add_entries(mixed)
    assert ids[:700] == first and ids[-2:] == [ids[3], ids[1_000]]
    assert len(set(ids)) == 2_345 and queue.counts()["queued"] == 2_345
    assert queue.add_entries(mixed) == ids  # idempotent
    assert queue.get(first[0]).retry_count == 1 and queue.get(first[0]).lease_owner == "w"
    row = queue.get(ids[2_000])
    assert row.model_id == "test:0:2000" and row.title == "item 2000" and row.source_id == "0:2000"
    assert row.created_at is not None and abs((row.created_at - utcnow()).total_seconds()) < 120
    assert queue.add_entries([]) == []


def test_claim_orders_by_priority_and_counts_the_attempt(queue: Queue) -> None:
    low = queue.add_entries(entries(2, priority=0))
    high = queue.add_entries(entries(2, priority=5))
    claimed = queue.claim("w1", 3)
    assert [r.queue_id for r in claimed] == [*high, low[0]]
    assert all(r.retry_count == 1 and r.lease_owner == "w1" for r in claimed)
    assert [r.queue_id for r in queue.claim("w2", 10)] == [low[1]]  # leased items are not handed out twice
    assert queue.claim("w3", 10) == []


def test_transitions_need_the_lease(queue: Queue) -> None:
    (qid,) = queue.add_entries(entries(1))
    queue.claim("w1", 1)
    assert not queue.advance(qid, "intruder", "acquired")
    assert queue.advance(qid, "w1", "acquired", bytes_in=10)
    assert queue.advance(qid, "w1", "stored", snapshot_id="s")
    row = queue.get(qid)
    assert row.stage == "stored" and row.lease_owner is None and row.finished_at is not None


def test_permanent_errors_fail_at_once_others_back_off(queue: Queue) -> None:
    bad, flaky = queue.add_entries(entries(2))
    queue.claim("w", 2)
    gone = DownloadError("gone", reason="source_gone", kind="permanent")
    held, final = queue.fail(bad, "w", describe(gone), "queued")
    assert held and final and queue.get(bad).stage == "failed" and queue.get(bad).reason == "source_gone"
    refused = DownloadError("refused", reason="connection_failed")  # the network: transient
    held, final = queue.fail(flaky, "w", describe(refused), "queued")
    row = queue.get(flaky)
    assert held and not final and row.stage == "queued" and row.reason == "connection_failed"
    assert row.scheduled_at > utcnow()
    assert queue.claim("w", 5) == []  # backing off
    time.sleep(0.3)
    for attempt in (2, 3):
        (again,) = queue.claim("w", 5)
        assert again.retry_count == attempt
        held, final = queue.fail(flaky, "w", describe(refused), "queued")
        time.sleep(0.05 + 0.2 * 2 ** (attempt - 1))
    assert final and queue.get(flaky).stage == "failed"


def test_same_bytes_timing_out_get_one_more_try_not_three(queue: Queue) -> None:
    """Finding 13.7: a timeout / parser crash / memory cap is final on its second occurrence."""
    slow, crashy, lost = queue.add_entries(entries(3))
    queue.claim("w", 3)
    for qid, reason in ((slow, "timeout"), (crashy, "parser_crashed")):
        held, final = queue.fail(qid, "w", describe(IsolationError("worker killed", reason=reason)), "acquired")
        row = queue.get(qid)
        assert held and not final and row.stage == "queued" and "tried once more" in row.last_error
    # A worker that failed to start says nothing about the item: transient, like the network.
    assert describe(ExtractionError("no worker", reason="worker_failed"))["kind"] == "transient"
    held, final = queue.fail(lost, "w", describe(ExtractionError("no worker", reason="worker_failed")), "acquired")
    assert held and not final
    time.sleep(0.3)
    assert {r.queue_id for r in queue.claim("w", 5)} == {slow, crashy, lost}
    for qid, reason in ((slow, "timeout"), (crashy, "parser_crashed")):
        held, final = queue.fail(qid, "w", describe(IsolationError("worker killed", reason=reason)), "acquired")
        row = queue.get(qid)
        assert held and final and row.stage == "failed" and row.reason == reason and row.retry_count == 2
        assert "not retried again" in row.last_error
    held, final = queue.fail(lost, "w", describe(ExtractionError("no worker", reason="worker_failed")), "acquired")
    assert held and not final  # transient errors keep their max_retries=3


def test_banned_or_rate_limited_platform_reschedules_without_using_attempts(queue: Queue) -> None:
    from destill3d_tui.engine.errors import PlatformError, RateLimitError
    from destill3d_tui.engine.pipeline import platform_wait

    banned = PlatformError("banned for an hour", platform="test", status_code=403, reason="banned")
    banned.retry_after = 3600.0  # type: ignore[attr-defined]  # as engine/acquire/http.py sets it
    limited = RateLimitError("slow down", retry_after=0.2)
    assert platform_wait(banned) and platform_wait(limited)
    assert not platform_wait(DownloadError("gone", reason="source_gone", kind="permanent"))
    waits, throttled = queue.add_entries(entries(2))
    for _ in range(5):  # more refusals than max_retries=3: the items still wait
        claimed = {r.queue_id: r for r in queue.claim("w", 5)}
        if throttled in claimed:
            held, final = queue.fail(throttled, "w", describe(limited), "queued", retry_after=0.2, refund=True)
            assert held and not final
        if waits in claimed:
            held, final = queue.fail(waits, "w", describe(banned), "queued", retry_after=3600.0, refund=True)
            assert held and not final
        time.sleep(0.25)
    row = queue.get(waits)
    assert row.stage == "queued" and row.retry_count == 0 and row.reason == "banned"
    assert dt.timedelta(minutes=59) < row.scheduled_at - utcnow() <= dt.timedelta(hours=1)
    row = queue.get(throttled)
    assert row.stage == "queued" and row.retry_count == 0 and row.reason == "rate_limited"
    (again,) = queue.claim("w", 5)  # the banned one waits its hour; the throttled one is claimable
    assert again.queue_id == throttled and again.retry_count == 1
    # an ordinary transient failure still counts its attempt
    held, final = queue.fail(throttled, "w", describe(IsolationError("slow", reason="timeout")), "acquired")
    assert held and not final and queue.get(throttled).retry_count == 1


def test_reaper_hands_back_held_items_uncharged(queue: Queue) -> None:
    """Finding 13.4: an item a dead (or silent) runner merely held gets its attempt back."""
    a, b, c, d = queue.add_entries(entries(4))
    queue.claim("elsewhere:1:x", 1)  # another machine: only expiry frees it
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_owner = make_owner().rsplit(":", 2)[0] + f":{int(dead.stdout)}:t"
    queue.claim(dead_owner, 1)
    queue.claim(make_owner(), 1)  # alive and unexpired: kept
    assert queue.reap() == (1, 0)  # the dead process's item
    row = queue.get(b)
    assert row.lease_owner is None and row.reason == "worker_lost" and row.retry_count == 0
    assert "uncharged" in row.last_error
    Q = queue.Q
    Q.update(lease_expires_at=utcnow() - dt.timedelta(seconds=1)).where(Q.queue_id == a).execute()
    assert queue.reap() == (1, 0)
    assert queue.get(a).retry_count == 0 and queue.get(c).retry_count == 1 and queue.get(c).lease_owner
    # Held on its last attempt when the runner died: still handed back, never failed for it.
    Q.update(retry_count=3, lease_owner="elsewhere:2:y", lease_expires_at=utcnow() - dt.timedelta(seconds=1)).where(
        Q.queue_id == d
    ).execute()
    assert queue.reap() == (1, 0)
    assert queue.get(d).stage == "queued" and queue.get(d).retry_count == 2
    # Attempts used up with no lease at all (limits lowered by hand): nothing would claim it.
    Q.update(retry_count=3, lease_owner=None).where(Q.queue_id == d).execute()
    assert queue.reap() == (0, 1)
    assert queue.get(d).stage == "failed" and queue.get(d).error_stage == "queued"


def test_headless_json_reports_items_the_reaper_fails(tmp_path: Path) -> None:
    import io
    import json

    from destill3d_tui.engine.headless import EXIT_FAILED, run_headless

    from .conftest import make_settings

    url = f"sqlite:///{tmp_path / 'd.db'}"
    queue = Queue(Store(url), max_retries=3)
    (stuck,) = queue.add_entries(entries(1))
    queue.claim("elsewhere:1:x", 1)
    queue.fail(stuck, "elsewhere:1:x", describe(DownloadError("refused", reason="connection_failed")), "queued")
    Q = queue.Q
    Q.update(max_retries=1).where(Q.queue_id == stuck).execute()  # the limit lowered by hand
    queue.store.close()
    out, err = io.StringIO(), io.StringIO()
    assert run_headless(make_settings(url), json_lines=True, out=out, err=err) == EXIT_FAILED
    (line,) = [json.loads(text) for text in out.getvalue().splitlines()]
    assert line["queue_id"] == stuck and line["status"] == "failed" and line["reason"] == "connection_failed"
    assert line["stage"] == "queued" and line["attempts"] == 1
    assert "1 failed" in err.getvalue()


def test_release_refunds_and_heartbeat_extends(queue: Queue) -> None:
    ids = queue.add_entries(entries(2))
    queue.claim("w", 2)
    before = queue.get(ids[0]).lease_expires_at
    time.sleep(0.01)
    assert queue.heartbeat("w") == 2 and queue.get(ids[0]).lease_expires_at > before
    assert queue.release(ids, "w") == 2
    assert all(queue.get(i).retry_count == 0 and queue.get(i).lease_owner is None for i in ids)


def test_user_retry_cancel_priority(queue: Queue) -> None:
    a, b, c = queue.add_entries(entries(3))
    queue.claim("w", 1)
    assert queue.cancel([a, b]) == 2
    assert queue.get(a).stage == "failed" and queue.get(a).reason == "cancelled"
    assert not queue.advance(a, "w", "acquired")  # the worker lost the cancelled item
    assert queue.retry(failed=True) == 2
    assert queue.get(a).stage == "queued" and queue.get(a).retry_count == 0
    queue.set_priority(c, 9)
    assert queue.list()[0].queue_id == c
    assert queue.list(stage="failed") == []


def test_concurrent_claims_never_share_an_item(db_url: str) -> None:
    Queue(Store(db_url)).add_entries(entries(60))
    got: dict[str, list[int]] = {}

    def worker(name: str) -> None:
        q = Queue(Store(db_url), lease_seconds=60)
        mine = got.setdefault(name, [])
        while rows := q.claim(name, 3):
            mine.extend(r.queue_id for r in rows)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [i for ids in got.values() for i in ids]
    assert len(claimed) == 60 and len(set(claimed)) == 60


def test_local_paths(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "a.stl").write_bytes(b"solid a\nendsolid a\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.OBJ").write_text("v 0 0 0\n")
    (tmp_path / "notes.txt").write_text("not a model")
    q = Queue(Store(db_url))
    assert len(q.add_paths([tmp_path])) == 1
    assert len(q.add_paths([tmp_path], recursive=True)) == 2
    assert len(q.add_paths([tmp_path], recursive=True, pattern="*.txt")) == 1
    row = q.list(order="id")[0]
    assert row.model_id == f"local:{tmp_path / 'a.stl'}" and row.platform == "local" and row.source_url.startswith("file://")


def test_pages_of_every_stage_merge_the_stage_ranges_in_list_order(queue: Queue) -> None:
    """page() without a stage (the F3 board) reads one index range per stage: the same rows, in
    the same order, as the whole table ordered by priority, page after page."""
    ids = queue.add_entries(entries(23) + entries(9, priority=2) + entries(7, priority=-1))
    stages = {"acquired": ids[1:30:4], "stored": ids[2:39:5], "failed": ids[3:12:3]}
    for stage, chosen in stages.items():
        queue.store.execute(f"UPDATE processing_queue SET stage = ? WHERE queue_id IN ({', '.join('?' * len(chosen))})",
                            (stage, *chosen))
    expected = [r.queue_id for r in queue.list(limit=1000)]
    assert len(expected) == 39 and len({r.stage for r in queue.list(limit=1000)}) == 4
    for size in (1, 5, 13, 39, 50):
        seen, after = [], None
        while True:
            rows = queue.page(after, size)
            seen += [r.queue_id for r in rows]
            if len(rows) < size:
                break
            after = (rows[-1].priority, rows[-1].queue_id)
        assert seen == expected, size
    assert [r.queue_id for r in queue.page(None, 7, "stored")] == [r.queue_id for r in queue.list("stored", limit=7)]
    if not queue.store.is_postgres:
        plan = " ".join(r[-1] for r in queue.store.execute(
            "EXPLAIN QUERY PLAN SELECT priority, queue_id FROM processing_queue WHERE stage = 'queued' "
            "ORDER BY priority DESC, queue_id LIMIT 60").fetchall())
        assert "idx_queue_stage" in plan and "TEMP B-TREE" not in plan, plan
