"""The job database (real SQLite files)."""

from __future__ import annotations

import sqlite3

import pytest

from spotdet.errors import UsageError
from spotdet.jobs.jobdb import SCHEMA_VERSION, Failure, JobDB, Shard


def _shards(n: int):
    for i in range(n):
        yield Shard(i, i * 2, [f"/img/{i}a.jpg", f"/img/{i}b.jpg"])


def test_wal_mode_and_plan(tmp_path):
    with JobDB(tmp_path / "job.db") as db:
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.plan({"spec": {"model": "m"}}, _shards(5)) == 5
        assert db.is_planned() and db.stored_job() == {"spec": {"model": "m"}}
        assert db.get_meta("schema") == SCHEMA_VERSION
        counts = db.counts()
        assert counts.images_total == 10 and counts.shards == {"pending": 5} and not counts.complete


def test_unplan_and_replan(tmp_path):
    with JobDB(tmp_path / "job.db") as db:
        db.plan({"spec": {"model": "a"}}, _shards(5))
        db.unplan()
        assert not db.is_planned()
        assert db.plan({"spec": {"model": "b"}}, _shards(2)) == 2
        assert db.stored_job() == {"spec": {"model": "b"}} and db.counts().total_shards == 2


def test_a_database_from_a_newer_spotdet_is_refused_clearly(tmp_path):
    with JobDB(tmp_path / "job.db") as db:
        db.plan({"spec": {}}, _shards(1))
        db.set_meta("schema", SCHEMA_VERSION + 1)
        with pytest.raises(UsageError, match="newer than this spotdet"):
            db.stored_job()


def test_planning_is_all_or_nothing(tmp_path):
    def broken():
        yield from _shards(3)
        raise RuntimeError("source vanished")

    with JobDB(tmp_path / "job.db") as db:
        with pytest.raises(RuntimeError):
            db.plan({"spec": {}}, broken())
        assert not db.is_planned()
        assert db.counts().images_total == 0


def test_shard_life_cycle_and_recovery(tmp_path):
    with JobDB(tmp_path / "job.db") as db:
        db.plan({}, _shards(3))
        run = db.start_run(1, "local", 1)
        todo = list(db.todo())
        assert [s.id for s in todo] == [0, 1, 2] and todo[1].paths == ["/img/1a.jpg", "/img/1b.jpg"]
        db.mark_running(0)
        db.mark_running(1)
        db.commit_shard(0, 1, [Failure(0, 1, "/img/0b.jpg", "broken")], 0.5, run)
        db.mark_error(2, "boom")
    # A new process (the previous one died with shard 1 running) recovers it to pending.
    with JobDB(tmp_path / "job.db") as db:
        db.recover()
        assert [s.id for s in db.todo()] == [1, 2]
        assert [s.id for s in db.todo(retry_errors=False)] == [1]
        assert db.failures() == [Failure(0, 1, "/img/0b.jpg", "broken")]
        assert db.shard_errors() == [(2, "boom")]
        counts = db.counts()
        assert (counts.images_done, counts.images_ok, counts.images_failed) == (2, 1, 1)
        assert db.runs()[0]["images"] == 2


def test_commit_is_one_transaction(tmp_path):
    """A failure insert that violates the schema rolls back the whole commit: the shard stays not done."""
    with JobDB(tmp_path / "job.db") as db:
        db.plan({}, _shards(1))
        run = db.start_run(1, "local", 1)
        dup = Failure(0, 0, "/img/0a.jpg", "x")
        with pytest.raises(sqlite3.IntegrityError):
            db.commit_shard(0, 0, [dup, dup], 0.1, run)
        assert db.done_shard_ids() == [] and db.failures() == []


def test_read_only_connection_sees_commits_while_writer_is_open(tmp_path):
    with JobDB(tmp_path / "job.db") as db:
        db.plan({}, _shards(2))
        run = db.start_run(1, "local", 1)
        db.commit_shard(1, 2, [], 0.1, run)
        with JobDB(tmp_path / "job.db", readonly=True) as reader:
            assert reader.done_shard_ids() == [1]
