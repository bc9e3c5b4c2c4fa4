import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from actlas.collect import attribute, relaxed_max_pool, sample_positions
from actlas.data import images, store
from actlas.formats import shards as shard_files
from actlas.models.spec import ModelSpec
from actlas.stages.collect import collect

pytestmark = pytest.mark.usefixtures("trust_code")  # the tests' own factories (tiny_models:...)


def test_positions_avoid_edges_and_are_deterministic():
    p = sample_positions((7, 7), 5, seed=1, key=42)
    assert p.shape == (5, 2) and p.min() >= 1 and p.max() <= 5
    assert len({tuple(r) for r in p.tolist()}) == 5
    assert np.array_equal(p, sample_positions((7, 7), 5, seed=1, key=42))
    assert not np.array_equal(p, sample_positions((7, 7), 5, seed=2, key=42))
    assert len(sample_positions((7, 7), 0, 0, 0)) == 25  # every interior position
    assert len(sample_positions((3, 3), 0, 0, 0)) == 9  # too small for a margin


SPEC = ModelSpec(
    name="tiny", source="tiny_models:tiny_net", input_size=(32, 32), resize=32, mean=(0, 0, 0), std=(1, 1, 1)
)


def test_attribution_matches_autograd_per_sample(tiny_model):
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    logits, acts, attrs, classes = attribute(tiny_model, SPEC, x, ["features.3"], attr_top=2)
    assert attrs["features.3"].shape == (3, 2, 16, 16)
    for b in range(3):
        for j in range(2):
            xb = x[b : b + 1]
            store_ = {}
            h = tiny_model.features[3].register_forward_hook(lambda m, i, o, store_=store_: store_.setdefault("a", o))
            with torch.enable_grad(), relaxed_max_pool(tiny_model):
                out = tiny_model(xb)
                a = store_["a"]
                (g,) = torch.autograd.grad(out[0, classes[b, j]], a)
            h.remove()
            expected = (a.detach() * g).sum(1)[0]
            torch.testing.assert_close(attrs["features.3"][b, j], expected, rtol=1e-4, atol=1e-6)


def test_max_pool_gradient_is_relaxed_to_average(tiny_model):
    pool = torch.nn.MaxPool2d(2)
    net = torch.nn.Sequential(pool)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], requires_grad=True)
    with relaxed_max_pool(net):
        y = net(x)
        (g,) = torch.autograd.grad(y.sum(), x)
    assert y.item() == 4.0
    torch.testing.assert_close(g, torch.full_like(x, 0.25))
    (g2,) = torch.autograd.grad(net(x).sum(), x)  # restored afterwards
    assert g2.flatten().tolist() == [0, 0, 0, 1]


def _shard(tiny_dataset, tmp_path) -> Path:
    rows = images.list_images(tiny_dataset)
    path = tmp_path / "shard-00000.txt"
    path.write_text(shard_files.format_shard(rows))
    return path


def test_collect_tiny_shard(tiny_dataset, tmp_path):
    shard = _shard(tiny_dataset, tmp_path)
    summary = collect(
        shard,
        tmp_path / "s.zarr",
        "tiny_models:tiny_net",
        ["features.3", "features.1"],
        positions=3,
        attr_top=2,
        batch_size=4,
        chunk=8,
        workers=0,
        progress=False,
    )
    assert summary["images"] == 16 and summary["skipped"] == 0
    assert summary["rows"] == {"features.3": 48, "features.1": 48}
    acts = store.read([tmp_path / "s.zarr"], "features.3/activation")
    assert acts.shape == (48, 16) and acts.dtype == np.float16
    image = store.read([tmp_path / "s.zarr"], "features.3/image")
    assert np.array_equal(np.bincount(image), np.full(16, 3))


def _collect_cmd(shard, out):
    """``actlas collect`` on the tiny model, pausing 0.3 s after each commit (``slow_actlas``)."""
    return [
        sys.executable,
        str(Path(__file__).parent / "slow_actlas.py"),
        "0.3",
        "collect",
        str(shard),
        str(out),
        "--model",
        "tiny_models:tiny_net",
        "--trust-code",
        "--layer",
        "features.3",
        "--positions",
        "2",
        "--attr-top",
        "2",
        "--batch-size",
        "2",
        "--chunk",
        "2",
        "--workers",
        "0",
        "--threads",
        "1",
    ]


@pytest.mark.parametrize("kill_after_commits", [1, 3, 6])
def test_sigkill_then_resume_equals_uninterrupted(tiny_dataset, tmp_path, kill_after_commits):
    """SIGKILL `actlas collect` part-way; the same command resumes to the uninterrupted store."""
    shard = _shard(tiny_dataset, tmp_path)
    here = Path(__file__).parent  # the tests' factories, and the actlas under test (not another checkout's)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(here), str(here.parent / "src")]),
    }
    ref, out = tmp_path / "ref.zarr", tmp_path / "out.zarr"
    subprocess.run(_collect_cmd(shard, ref), env=env, check=True, capture_output=True)
    proc = subprocess.Popen(_collect_cmd(shard, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if store.committed_of(out, "images/ok") >= 2 * kill_after_commits:
                break
        except Exception:  # noqa: BLE001 - store not created yet
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not store.is_complete(out), "killed too late to test a resume"
    subprocess.run(_collect_cmd(shard, out), env=env, check=True, capture_output=True)
    for name in (
        "features.3/activation",
        "features.3/image",
        "features.3/position",
        "features.3/attr_value",
        "images/pred",
        "images/ok",
    ):
        np.testing.assert_array_equal(store.read([out], name), store.read([ref], name), err_msg=name)


def test_store_from_other_params_is_refused(tiny_dataset, tmp_path):
    shard = _shard(tiny_dataset, tmp_path)
    collect(shard, tmp_path / "s.zarr", "tiny_models:tiny_net", ["features.3"], positions=1, workers=0, progress=False)
    with pytest.raises(store.StoreError, match="other parameters"):
        collect(
            shard, tmp_path / "s.zarr", "tiny_models:tiny_net", ["features.3"], positions=2, workers=0, progress=False
        )


def test_deterministic_bytes(tiny_dataset, tmp_path):
    shard = _shard(tiny_dataset, tmp_path)
    for name in ("a", "b"):
        collect(
            shard,
            tmp_path / f"{name}.zarr",
            "tiny_models:tiny_net",
            ["features.3"],
            positions=2,
            workers=0,
            progress=False,
        )
    a = store.read([tmp_path / "a.zarr"], "features.3/activation")
    b = store.read([tmp_path / "b.zarr"], "features.3/activation")
    assert a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------- every layer kind

from actlas.errors import LayerError


def _block(source: str) -> dict:
    return {
        "source": source,
        "input_size": [32, 32],
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "labels": [f"c{i}" for i in range(10)],
    }


def test_collect_tokens_channels_last_and_pooled_layers(tiny_dataset, tmp_path):
    shard = _shard(tiny_dataset, tmp_path)
    kw = dict(positions=3, attr_top=2, batch_size=4, chunk=8, workers=0, progress=False)
    summary = collect(shard, tmp_path / "vit.zarr", _block("tiny_models:tiny_vit"), ["blocks.1", "head"], **kw)
    assert summary["rows"] == {"blocks.1": 48, "head": 16}  # pooled: one position per image
    pos = store.read([tmp_path / "vit.zarr"], "blocks.1/position")
    assert pos.min() >= 0 and pos.max() <= 3  # on the 4 x 4 patch grid (too small for a margin)
    assert store.read([tmp_path / "vit.zarr"], "blocks.1/activation").shape == (48, 16)
    import zarr

    group = zarr.open_group(str(tmp_path / "vit.zarr"), mode="r")
    assert group["blocks.1"].attrs["spatial"] == [4, 4]
    assert group["blocks.1"].attrs["kind"] == {"kind": "tokens", "prefix": 1}
    assert group["head"].attrs["spatial"] == [1, 1]
    summary = collect(shard, tmp_path / "cl.zarr", _block("tiny_models:channels_last_net"), ["norm"], **kw)
    assert summary["rows"] == {"norm": 48}
    assert zarr.open_group(str(tmp_path / "cl.zarr"), mode="r")["norm"].attrs["spatial"] == [8, 8]


def test_token_attribution_matches_autograd():
    from tiny_models import tiny_vit

    model = tiny_vit().eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    logits, acts, attrs, classes = attribute(model, SPEC, x, ["blocks.0"], attr_top=1)
    assert acts["blocks.0"].shape == (2, 16, 4, 4) and attrs["blocks.0"].shape == (2, 1, 4, 4)
    kept = {}
    h = model.blocks[0].register_forward_hook(lambda m, i, o: kept.setdefault("a", o))
    with torch.enable_grad():
        out = model(x)
        (g,) = torch.autograd.grad(out.gather(1, classes[:, :1]).sum(), kept["a"])
    h.remove()
    expected = (kept["a"] * g).sum(2)[:, 1:].reshape(2, 4, 4)  # patch tokens after the CLS token
    torch.testing.assert_close(attrs["blocks.0"][:, 0], expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(acts["blocks.0"][:, :, 1, 2], kept["a"][:, 1 + 1 * 4 + 2].detach())


def test_unusable_layer_fails_in_one_line_before_any_store(tiny_dataset, tmp_path):
    shard = _shard(tiny_dataset, tmp_path)
    out = tmp_path / "s.zarr"
    block = {**_block("tiny_models:tiny_net"), "layer_kinds": {"fc": "map"}}
    with pytest.raises(LayerError, match="layer 'fc' outputs shape \\[10\\] per image") as err:
        collect(shard, out, block, ["fc"], workers=0, progress=False)
    assert "\n" not in str(err.value)
    assert not out.exists() and not Path(str(out) + ".skipped.tsv").exists()


def test_a_linear_layer_is_one_pooled_position(tiny_dataset, tmp_path):
    """The issue's classifier.1 case: a Linear layer is a pooled (B, C) output with one position."""
    shard = _shard(tiny_dataset, tmp_path)
    summary = collect(
        shard,
        tmp_path / "s.zarr",
        _block("tiny_models:tiny_net"),
        ["fc"],
        positions=4,
        attr_top=2,
        batch_size=8,
        workers=0,
        progress=False,
    )
    assert summary["rows"] == {"fc": 16}
    assert (store.read([tmp_path / "s.zarr"], "fc/position") == 0).all()


def test_collect_from_a_torch_export_program(tiny_dataset, tmp_path, tiny_model):
    """export:PATH.pt2: hooks on the unflattened modules, attribution through the program."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(tiny_model, (torch.zeros(2, 3, 32, 32),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "tiny.pt2"))
    shard = _shard(tiny_dataset, tmp_path)
    kw = dict(positions=2, attr_top=2, batch_size=4, workers=0, progress=False)
    block = {**_block("tiny_models:tiny_net"), "source": f"export:{tmp_path / 'tiny.pt2'}"}
    collect(shard, tmp_path / "exp.zarr", block, ["features.3"], **kw)
    collect(shard, tmp_path / "ref.zarr", _block("tiny_models:tiny_net"), ["features.3"], **kw)
    for column in ("features.3/activation", "features.3/attr_value", "features.3/position"):
        np.testing.assert_allclose(
            store.read([tmp_path / "exp.zarr"], column).astype(np.float32),
            store.read([tmp_path / "ref.zarr"], column).astype(np.float32),
            rtol=1e-3,
            atol=1e-5,
        )
