"""The SQLite utilization log: what is written is read back, in time order, and bad files are typed errors."""

from __future__ import annotations

import pytest

from spotdet.cost.utilization import Sample, UtilizationLogError, open_db, read_db, write_samples
from spotdet.errors import UsageError


def test_round_trip_in_time_order_and_since(tmp_path):
    db = tmp_path / "deep" / "u.sqlite"  # missing folders are created
    written = [Sample(30.0, "gpu1", 75.5, 900.0, 1000.0), Sample(10.0, "cpu", 5.0, 1.0, 2.0, 12.5, 300.0),
               Sample(20.0, "gpu0", 0.0)]
    conn = open_db(db)
    write_samples(conn, written)
    conn.close()
    log = read_db(db)
    assert log.samples == sorted(written, key=lambda s: s.ts) and log.skipped == 0 and log.source == str(db)
    assert [s.ts for s in read_db(db, since=20.0).samples] == [20.0, 30.0]  # since is inclusive


def test_reopening_appends(tmp_path):
    db = tmp_path / "u.sqlite"
    for ts in (1.0, 2.0):
        conn = open_db(db)
        write_samples(conn, [Sample(ts, "cpu", 1.0)])
        conn.close()
    assert [s.ts for s in read_db(db).samples] == [1.0, 2.0]


def test_bad_files(tmp_path):
    with pytest.raises(UsageError, match="no such utilization log"):
        read_db(tmp_path / "missing.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database")
    with pytest.raises(UtilizationLogError, match="not a spotdet utilization log"):
        read_db(junk)
    with pytest.raises(UtilizationLogError, match="not a usable SQLite utilization log"):
        open_db(junk)
