"""--engine ray on a local Ray instance (2 CPUs) gives the same results as the local engine."""

from __future__ import annotations

import pytest

from support.batch import COCO128, FAST_MODEL, assert_same_results, read_jsonl
from spotdet.jobs import JobSpec, RunOptions, WorkerStartError, run_job
from spotdet.jobs.jobdb import JobDB
from spotdet.options import DetectOptions

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'spotdet[ray]')")


def test_ray_engine_matches_local_engine(tmp_path):
    listing = tmp_path / "images.txt"
    listing.write_text("\n".join(str(p) for p in sorted(COCO128.glob("*.jpg"))[:40]) + "\nnot-there.jpg\n")
    spec = JobSpec(source=str(listing), model=FAST_MODEL, shard_size=8)
    local = run_job(tmp_path / "local", spec, RunOptions(workers=2, threads=1))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_job(tmp_path / "ray", spec, RunOptions(workers=2, threads=1, engine="ray"))
        # An actor that cannot build its Detector reports the Detector's own error (not "a Ray worker died").
        wrong = JobSpec(source=str(listing), model=FAST_MODEL, options=DetectOptions(imgsz=640))
        with pytest.raises(WorkerStartError, match="fixed input of 352x352") as caught:
            run_job(tmp_path / "wrong", wrong, RunOptions(workers=1, threads=1, engine="ray"))
        assert caught.value.exit_code == 2
    finally:
        ray.shutdown()
    assert local.state == remote.state == "complete"
    assert remote.images_total == 41 and remote.images_failed == 1
    with JobDB(tmp_path / "ray" / "job.db", readonly=True) as db:
        assert [r["engine"] for r in db.runs()] == ["ray"]
    assert_same_results(read_jsonl(tmp_path / "ray" / "results.jsonl"),
                        read_jsonl(tmp_path / "local" / "results.jsonl"))
