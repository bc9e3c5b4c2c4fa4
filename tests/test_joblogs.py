"""The error lines of a run's job logs, as the workflow's console shows them when a job fails."""

import os
import time

from actlas import paths
from actlas.joblogs import job_errors


def test_job_errors_reads_the_logs_written_since_the_start(tmp_path):
    failed = paths.log(tmp_path, "layout", "features.13")
    failed.parent.mkdir(parents=True)
    failed.write_text("warning: something\nError: layout needs at least 4 samples; collect more images\n")
    ok = paths.log(tmp_path, "collect", "shard-00000")
    ok.parent.mkdir(parents=True)
    ok.write_text("warning: model assumed ImageNet mean/std\n")
    old = paths.log(tmp_path, "render", "features.13-5-00000")
    old.parent.mkdir(parents=True)
    old.write_text("Error: from a run before this one\n")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    os.mkfifo(paths.log(tmp_path, "collect", "shard-00001"))  # never opened: it would block
    (ok.parent / "shard-00002.log").symlink_to(tmp_path / "nowhere")
    assert job_errors(tmp_path, since=time.time() - 60) == [
        "layout/features.13: Error: layout needs at least 4 samples; collect more images"
    ]
    assert len(job_errors(tmp_path, since=0.0)) == 2
    assert job_errors(tmp_path / "missing", since=0.0) == []
