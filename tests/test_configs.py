"""Every config the repository ships plans offline: ``snakemake -n`` on it (and on each overlay with its
base) passes the parse-time checks, with the run directory moved to a temporary folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow

# an overlay -> the config it is given after
OVERLAYS = {
    "patches.yaml": "demo.yaml",
    "demo-aligned.yaml": "demo.yaml",
    "cifar10-patches.yaml": "cifar10.yaml",
}
NOT_RUNS = ("config.yaml", "schema.yaml")  # the defaults, and the schema of every config
CONFIGS = sorted(p.name for p in (ROOT / "config").glob("*.yaml") if p.name not in NOT_RUNS)


@pytest.mark.parametrize("name", CONFIGS)
def test_a_shipped_config_plans_offline(name, tmp_path):
    files = [OVERLAYS[name], name] if name in OVERLAYS else [name]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(ROOT / "src")]),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "2", "--configfile"]
    cmd += [str(ROOT / "config" / f) for f in files] + ["--config", f"run_dir={tmp_path / 'run'}"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(files)}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    assert "This was a dry-run" in out.stdout + out.stderr
    assert not (tmp_path / "run").exists(), "a dry run wrote into its run directory"
