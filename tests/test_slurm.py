"""The workflow on a real single-node SLURM cluster, against a local run of the same config (slow).

The fixture starts munged, slurmctld and slurmd for this host in a temporary folder (its own
munge socket, ports, state and ``SLURM_CONF``, so nothing under /etc or /run is touched and two
clusters on one machine do not meet), and stops them by PID. It needs root and Debian's
``slurm-wlm munge`` (``.ci/run`` installs them); without them the tests skip and say why.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, _photo_folder, small_config

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scancel", "sinfo")
N_PHOTOS = 12
# Tiny but complete: 2 shards, one layer, one 3x3 grid, 3 render batches (grouped into 1 cluster job).
OVERRIDES = {
    "collect": {"shard_size": 6, "positions": 4, "threads": 1},
    "layout": {"n_neighbors": 8},
    "grid": {"sizes": [3], "min_count": 2},
    "render": {"size": 32, "min_positions": 0, "steps": 6, "batch_size": 3, "cells_per_job": 3, "threads": 1},
    "atlas": {"n_examples": 1},
}


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid(path: Path, timeout: float = 10.0) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text().split()[0])
        time.sleep(0.05)
    raise RuntimeError(f"no pid file {path}")


class Cluster:
    """A one-node SLURM cluster for this host, everything under ``base`` (see ../shared/SLURM.md)."""

    def __init__(self, base: Path):
        self.base = base
        self.pids: list[int] = []
        self.env: dict[str, str] = {}

    def start(self) -> None:
        b = self.base
        b.chmod(0o755)  # munged wants every folder above its socket searchable by all
        for d in ("munge", "state", "spool", "log"):
            (b / d).mkdir(parents=True, exist_ok=True)
        (b / "munge").chmod(0o755)
        key = b / "munge" / "munge.key"
        if Path("/etc/munge/munge.key").exists():
            shutil.copy("/etc/munge/munge.key", key)
        else:
            key.write_bytes(os.urandom(128))
        key.chmod(0o600)
        sock = b / "munge" / "munge.socket"
        subprocess.run(
            [
                _which("munged"),
                f"--socket={sock}",
                f"--key-file={key}",
                f"--pid-file={b}/munge/munged.pid",
                f"--log-file={b}/log/munged.log",
                f"--seed-file={b}/munge/munged.seed",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.pids.append(_pid(b / "munge" / "munged.pid"))

        host = socket.gethostname().split(".")[0]
        mem = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20)
        cpus = os.cpu_count() or 1
        conf = b / "slurm.conf"
        conf.write_text(
            "\n".join(
                [
                    "ClusterName=actlastest",
                    f"SlurmctldHost={host}(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={sock}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"StateSaveLocation={b}/state",
                    f"SlurmdSpoolDir={b}/spool",
                    f"SlurmctldPidFile={b}/slurmctld.pid",
                    f"SlurmdPidFile={b}/slurmd.pid",
                    f"SlurmctldLogFile={b}/log/slurmctld.log",
                    f"SlurmdLogFile={b}/log/slurmd.log",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "JobCompType=jobcomp/none",
                    "SchedulerType=sched/backfill",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    "ReturnToService=2",
                    "MpiDefault=none",
                    "MailProg=/bin/true",
                    # The profile asks for cluster-sized memory (64 GB for layout); memory is not enforced
                    # here (no cgroups), so the node declares what the profile needs instead of what it has.
                    "SlurmdParameters=config_overrides",
                    f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={max(mem, 128000)} State=UNKNOWN",
                    f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        # Inside a cluster job the plugin runs the rule with `srun`, after deleting every SLURM_*
        # variable from its environment (SLURM_CONF too), so srun would look for /etc/slurm/slurm.conf.
        # A wrapper first on PATH (which jobs inherit) puts this cluster's config back.
        (b / "bin").mkdir(exist_ok=True)
        srun = b / "bin" / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF={conf} exec {_which("srun")} "$@"\n')
        srun.chmod(0o755)
        path = f"{b / 'bin'}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
        self.env = {**os.environ, "SLURM_CONF": str(conf), "PATH": path}
        subprocess.run([_which("slurmctld"), "-c"], env=self.env, check=True, capture_output=True, timeout=30)
        self.pids.append(_pid(b / "slurmctld.pid"))
        subprocess.run([_which("slurmd")], env=self.env, check=True, capture_output=True, timeout=30)
        self.pids.append(_pid(b / "slurmd.pid"))
        deadline = time.time() + 30
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
            if out.stdout.strip() == "idle":
                return
            time.sleep(0.2)
        raise RuntimeError(f"SLURM node not idle: {out.stdout} {out.stderr}\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((self.base / "log").glob("*.log")))

    def queue(self) -> list[str]:
        out = subprocess.run(
            ["squeue", "-h", "-o", "%i %j %T"], env=self.env, capture_output=True, text=True, check=True
        )
        return out.stdout.split("\n")[:-1]

    def cancel_all(self, timeout: float = 60) -> None:
        subprocess.run(["scancel", "--user", str(os.getuid())], env=self.env, capture_output=True)
        deadline = time.time() + timeout
        while self.queue() and time.time() < deadline:
            time.sleep(0.5)

    def stop(self) -> None:
        for pid in reversed(self.pids):  # slurmd, slurmctld, munged
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        self.pids.clear()


@pytest.fixture(scope="module")
def cluster():
    missing = [b for b in BINARIES if not _which(b)]
    if missing:
        pytest.skip(f"SLURM not installed (missing {', '.join(missing)}): apt-get install -y slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("the test cluster's slurmd must run as root")
    c = Cluster(Path(tempfile.mkdtemp(prefix="slurm-")))  # short: the munge socket path must stay short
    try:
        c.start()
    except Exception as err:  # any failure to start: stop what started, show the logs
        logs = c.logs()
        c.stop()
        raise RuntimeError(f"could not start the test SLURM cluster:\n{logs}") from err
    yield c
    c.cancel_all(timeout=20)
    c.stop()
    shutil.rmtree(c.base, ignore_errors=True)


def _cmd(work: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(ROOT),
        "--configfile",
        str(work / "config.yaml"),
        *args,
    ]


def _slurm_args(work: Path) -> list[str]:
    """The profile as a user runs it, plus what this test cluster needs (no account, quick polling)."""
    return [
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "--jobs",
        "4",
        "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-logdir",
        str(work / "slurm-logs"),
        "--slurm-keep-successful-logs",
        "--latency-wait",
        "5",
        "--retries",
        "0",
        "--keep-going",
    ]


def _run(cmd: list[str], env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise AssertionError(f"snakemake failed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-6000:]}")
    return out


def _work(tmp_path_factory, name: str, images: Path) -> Path:
    work = tmp_path_factory.mktemp(name)
    (work / "config.yaml").write_text(small_config(work / "run", images, **OVERRIDES))
    return work


@pytest.fixture(scope="module")
def images(card) -> Path:
    return _photo_folder(N_PHOTOS)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, images) -> Path:
    """The reference: the same config run by local Snakemake."""
    work = _work(tmp_path_factory, "local", images)
    _run(
        _cmd(work, "--cores", "2"),
        {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"},
    )
    return work / "run"


def _outputs(run: Path) -> dict:
    """What a run produced, reduced to what must be identical between two runs of one config."""
    import zarr

    out: dict = {}
    for store in sorted((run / "collect").glob("shard-*.zarr")):
        g = zarr.open_group(str(store), mode="r")
        for name in (
            "features.13/activation",
            "features.13/image",
            "features.13/position",
            "features.13/attr_class",
            "images/label",
            "images/pred",
        ):
            out[f"{store.name}/{name}"] = g[name][: g.attrs["committed"][name]].tobytes()
    grid = run / "features.13" / "grid-3"
    with np.load(grid / "cells.npz") as f:
        out["cells"] = {k: f[k].tobytes() for k in ("ij", "count", "order", "offsets")}
        out["directions"] = f["direction"]
    icons = {}
    for batch in sorted((grid / "render").glob("batch-*.npz")):
        with np.load(batch) as f:
            for cell, icon in zip(f["cell"], f["icon"]):
                icons[int(cell)] = icon
    out["icons"] = icons
    out["coords"] = np.load(run / "features.13" / "coords.npy")
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    shard_keys = [k for k in a if k.startswith("shard-")]
    assert shard_keys and all(a[k] == b[k] for k in shard_keys), "collected samples differ"
    assert a["cells"] == b["cells"], "grid cells differ"
    np.testing.assert_allclose(a["directions"], b["directions"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(a["coords"], b["coords"])
    assert sorted(a["icons"]) == sorted(b["icons"]) and len(a["icons"]) >= 2
    for cell in a["icons"]:
        np.testing.assert_array_equal(a["icons"][cell], b["icons"][cell], err_msg=f"icon of cell {cell} differs")


def _cluster_jobs(work: Path) -> dict[str, int]:
    """Cluster jobs per rule (or group), from the plugin's SLURM log folder."""
    logs = work / "slurm-logs"
    return {d.name: len(list(d.rglob("*.log"))) for d in logs.iterdir() if d.is_dir()} if logs.exists() else {}


def test_slurm_run_equals_local_run(cluster, tmp_path_factory, images, local_run):
    work = _work(tmp_path_factory, "slurm", images)
    start = time.time()
    _run(_cmd(work, *_slurm_args(work)), cluster.env)
    seconds = time.time() - start
    _assert_same(_outputs(local_run), _outputs(work / "run"))
    assert (work / "run" / "manifest.json").exists()

    # Shards written by concurrent cluster jobs (one store each) read back as one array.
    from actlas.data import store

    stores = sorted((work / "run" / "collect").glob("shard-*.zarr"))
    merged = store.read_dask(stores, "features.13/activation").compute()
    assert len(stores) == 2 and len(merged) == N_PHOTOS * OVERRIDES["collect"]["positions"]
    np.testing.assert_array_equal(merged, np.concatenate([store.read([s], "features.13/activation") for s in stores]))
    np.testing.assert_array_equal(
        merged, store.read(sorted((local_run / "collect").glob("shard-*.zarr")), "features.13/activation")
    )
    jobs = _cluster_jobs(work)
    render_batches = len(list((work / "run" / "features.13" / "grid-3" / "render").glob("batch-*.npz")))
    assert jobs.get("rule_collect") == 2, jobs
    assert render_batches >= 2 and "rule_render" not in jobs, f"render jobs went out ungrouped: {jobs}"
    assert sum(v for k, v in jobs.items() if k.startswith("group_")) < render_batches, jobs
    print(f"slurm run: {seconds:.0f} s, cluster jobs {jobs}")


def _incomplete(run: Path) -> set[str]:
    """Outputs Snakemake marked as started but not finished (.snakemake/incomplete), under ``run``."""
    marked = set()
    for p in (ROOT / ".snakemake" / "incomplete").glob("*"):
        try:
            path = base64.urlsafe_b64decode(p.name.encode()).decode()
        except Exception:  # noqa: BLE001 - not a marker
            continue
        if path.startswith(str(run)):
            marked.add(path)
    return marked


def _unlock(run: Path) -> None:
    """Remove the killed driver's locks on ``run`` only (``snakemake --unlock`` would drop every
    lock in the shared working directory, other workflows' too)."""
    for lock in (ROOT / ".snakemake" / "locks").glob("*.lock"):
        try:
            if str(run) in lock.read_text():
                lock.unlink()
        except FileNotFoundError:
            pass


def test_killed_driver_resumes(cluster, tmp_path_factory, images, local_run):
    """SIGKILL the snakemake driver mid-run, cancel its cluster jobs, run the same command again."""
    work = _work(tmp_path_factory, "killed", images)
    run = work / "run"
    cmd = _cmd(work, *_slurm_args(work))
    grid = run / "features.13" / "grid-3"
    driver = subprocess.Popen(cmd, cwd=ROOT, env=cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        # Kill once at least one icon is rendered and cached, before the atlas exists.
        while time.time() < deadline and driver.poll() is None:
            if list((run / "cache" / "icons").glob("*.npz")) and not (grid / "atlas.json").exists():
                break
            time.sleep(0.2)
        assert driver.poll() is None, "the run finished before it could be killed; make it longer"
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
    cluster.cancel_all()  # what an operator does after losing the driver: scancel its jobs
    killed_at = time.time()
    unfinished = _incomplete(run)
    stores = sorted((run / "collect").glob("shard-*.zarr"))
    assert len(stores) == 2 and not any(str(s) in unfinished for s in stores), "collect had finished"
    kept = {p: p.stat().st_mtime_ns for s in stores for p in s.rglob("*") if p.is_file()}
    cached = {p: p.stat().st_mtime_ns for p in (run / "cache" / "icons").glob("*.npz")}
    assert cached

    _unlock(run)
    _run(cmd, cluster.env)

    assert all(p.stat().st_mtime_ns == t for p, t in kept.items()), "a finished shard was collected again"
    assert all(p.stat().st_mtime_ns == t for p, t in cached.items()), "a cached icon was rendered again"
    # Icons cached before the kill are reused; the others are rendered once, after it.
    rendered_after = 0
    for batch in (grid / "render").glob("batch-*.npz"):
        if batch.stat().st_mtime > killed_at:
            with np.load(batch) as f:
                rendered_after += int(f["rendered"])
    with np.load(grid / "cells.npz") as f:
        n_cells = len(f["count"])
    cache = list((run / "cache" / "icons").glob("*.npz"))
    assert len(cache) == n_cells
    assert rendered_after == n_cells - len(cached), "an icon was rendered twice"
    _assert_same(_outputs(local_run), _outputs(run))
