"""Concept dictionaries: recovery of planted dictionaries, encodings, files, measures and summaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actlas.concepts import dictionary as dm
from actlas.concepts import metrics, summaries
from actlas.concepts import train as learn
from actlas.errors import UserError
from actlas.formats import dictionary as dfile


def planted(n=3000, channels=24, size=32, active=3, seed=0, nonneg=False, noise=0.01):
    """Rows that are sparse non-negative combinations of a known dictionary: (rows (n, C), atoms (K, C))."""
    rng = np.random.default_rng(seed)
    if nonneg:  # parts: each atom on about a third of the channels, so that NMF's atoms are identifiable
        atoms = rng.random((size, channels)) * (rng.random((size, channels)) < 0.35)
        atoms[np.arange(size), rng.integers(0, channels, size)] += 1.0
    else:
        atoms = rng.standard_normal((size, channels))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    codes = np.zeros((n, size))
    for i in range(n):
        codes[i, rng.choice(size, active, replace=False)] = rng.uniform(1.0, 2.0, active)
    x = codes @ atoms + noise * rng.standard_normal((n, channels))
    if nonneg:
        x = np.maximum(x, 0)
    else:
        x += 3.0  # an offset the centre must absorb
    return x.astype(np.float32), atoms.astype(np.float32)


# --------------------------------------------------------------------------- learning


@pytest.mark.parametrize(
    "method, min_cos, max_l0",
    [("topk", 0.9, 3), ("batchtopk", 0.85, 4.5), ("archetypal", 0.95, 3), ("dl", 0.95, 3)],
)
def test_learn_recovers_a_planted_dictionary(method, min_cos, max_l0):
    """32 planted atoms in 24 channels, 3 active a row: a 48-atom dictionary finds each (one learned atom each)."""
    x, atoms = planted()
    train, held = dm.split(dm.array_chunks(x, 500), 0.2)
    # one thread: tiny matrices, and the same numbers wherever the test runs
    d = learn.learn(train, method=method, size=48, k=3, seed=0, epochs=40, batch_size=256, threads=1)
    cos = metrics.match_atoms(atoms, d.atoms)[2]
    assert cos.mean() >= min_cos, (method, float(cos.mean()))
    ev = metrics.evaluate(d, held)
    assert ev["r2"] >= 0.8 and ev["l0"] <= max_l0 and ev["dead"] <= 0.15, ev
    np.testing.assert_allclose(np.linalg.norm(d.atoms, axis=1), 1.0, atol=1e-5)


def test_nmf_recovers_a_planted_nonnegative_dictionary_and_refuses_signed_rows():
    x, atoms = planted(channels=16, size=12, active=2, nonneg=True)
    d = learn.learn(dm.array_chunks(x), method="nmf", size=16, k=2, seed=0, epochs=30, batch_size=256, threads=1)
    assert (d.atoms >= 0).all() and d.encoding == "omp" and not d.center.any()
    assert metrics.match_atoms(atoms, d.atoms)[2].mean() >= 0.95
    assert metrics.evaluate(d, dm.array_chunks(x))["r2"] >= 0.9
    with pytest.raises(UserError, match="non-negative"):
        learn.learn(dm.array_chunks(x - 0.5), method="nmf", size=4, k=2)


def test_auto_picks_nmf_for_nonnegative_rows_and_the_default_for_signed_ones():
    x, _ = planted(n=600, channels=16, size=12, active=2, nonneg=True)
    assert learn.learn(dm.array_chunks(x), size=16, k=2, epochs=1, threads=1).method == learn.AUTO["nonnegative"]
    y, _ = planted(n=600)
    assert learn.learn(dm.array_chunks(y - 3), size=32, k=3, epochs=1, threads=1).method == learn.AUTO["signed"]
    assert learn.AUTO["nonnegative"] == "nmf" and learn.AUTO["signed"] != "nmf"


def test_learning_is_deterministic_for_a_seed_and_varies_with_it():
    x, _ = planted(n=1500)

    def run(seed):
        return learn.learn(dm.array_chunks(x, 300), method="topk", size=32, k=3, seed=seed, epochs=4, threads=1)

    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a.atoms, b.atoms)
    np.testing.assert_array_equal(a.encoder, b.encoder)
    assert not np.array_equal(a.atoms, c.atoms)


def test_learning_streams_in_bounded_blocks_as_well_as_in_one():
    """A memory budget smaller than the rows streams block by block each epoch, and learns as well."""
    x, atoms = planted(n=3000)
    small = learn.learn(
        dm.array_chunks(x, 128),
        method="topk",
        size=48,
        k=3,
        epochs=40,
        batch_size=256,
        memory_bytes=700 * 24 * 4,
        threads=1,
    )
    assert small.info["rows"] == 3000
    assert metrics.match_atoms(atoms, small.atoms)[2].mean() >= 0.9


def test_learn_refuses_bad_settings():
    x, _ = planted(n=100)
    with pytest.raises(UserError, match="unknown concepts method"):
        learn.learn(dm.array_chunks(x), method="pca")
    with pytest.raises(UserError, match="k <= size"):
        learn.learn(dm.array_chunks(x), size=4, k=8)
    with pytest.raises(UserError, match="NaN"):
        learn.learn(dm.array_chunks(np.full((10, 4), np.nan, np.float32)), size=2, k=1)


def test_heldout_split_ignores_chunking_and_seed():
    x = np.arange(5000, dtype=np.float32)[:, None]
    a = np.concatenate(list(dm.split(dm.array_chunks(x, 7), 0.1)[1]()))
    b = np.concatenate(list(dm.split(dm.array_chunks(x, 1000), 0.1)[1]()))
    np.testing.assert_array_equal(a, b)
    assert 400 < len(a) < 600
    train = np.concatenate(list(dm.split(dm.array_chunks(x, 7), 0.1)[0]()))
    assert len(train) + len(a) == 5000 and not np.intersect1d(train, a).size
    other = np.concatenate(list(dm.split(dm.array_chunks(x, 7), 0.1, salt=1)[1]()))
    assert not np.array_equal(a, other)


# --------------------------------------------------------------------------- encoding


def test_omp_finds_the_atoms_of_a_sparse_nonnegative_combination():
    rng = np.random.default_rng(1)
    atoms = rng.standard_normal((40, 20)).astype(np.float32)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    d = dm.Dictionary(atoms=atoms, center=np.full(20, 0.5, np.float32), k=3)
    x = 0.5 + 2.0 * atoms[3] + 1.0 * atoms[17] + 0.5 * atoms[30]
    codes = d.encode(x[None])
    assert set(np.flatnonzero(codes[0])) == {3, 17, 30}
    np.testing.assert_allclose(codes[0, [3, 17, 30]], [2.0, 1.0, 0.5], atol=1e-4)
    np.testing.assert_allclose(d.decode(codes)[0], x, atol=1e-4)
    # a row whose only matching atoms point the other way gets no code at all, not a negative one
    assert not d.encode((0.5 - atoms[3])[None] * 0 + 0.5).any()


def test_encoder_codes_are_nonnegative_topk_and_reconstruct():
    x, _ = planted(n=800)
    d = learn.learn(dm.array_chunks(x), method="topk", size=32, k=3, epochs=5, threads=1)
    for encoding in ("encoder", "omp"):
        idx, val = d.encode_sparse(x, encoding=encoding)
        codes = d.encode(x, encoding=encoding)
        assert codes.shape == (800, 32) and (codes >= 0).all() and ((codes > 0).sum(1) <= 3).all()
        np.testing.assert_allclose(d.decode(codes), d.decode_sparse(idx, val), atol=1e-4)


def test_batchtopk_threshold_gives_about_k_active_atoms():
    x, _ = planted(n=2000)
    d = learn.learn(dm.array_chunks(x), method="batchtopk", size=32, k=3, epochs=20, batch_size=256, threads=1)
    assert d.threshold is not None and d.threshold > 0
    l0 = (d.encode(x, encoding="encoder") > 0).sum(1)
    assert 2.0 <= l0.mean() <= 4.5 and l0.max() > 3  # a threshold, not a per-row top 3


# --------------------------------------------------------------------------- files


def test_save_and_load_give_the_same_codes(tmp_path):
    x, _ = planted(n=600)
    d = learn.learn(dm.array_chunks(x), method="batchtopk", size=32, k=3, epochs=3, threads=1)
    dfile.save(d, tmp_path / "d.safetensors")
    e = dfile.load(tmp_path / "d.safetensors", channels=24)
    assert (e.method, e.k, e.encoding, e.threshold) == (d.method, d.k, d.encoding, d.threshold)
    np.testing.assert_array_equal(e.encode(x), d.encode(x))
    assert e.info["epochs"] == 3


def _write(path, tensors):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, str(path))
    return path


def test_load_saev_layout_encodes_like_its_model(tmp_path):
    """saev/SAELens keys: W_enc (C, K), b_enc, W_dec (K, C) of any norm, b_dec; TopK on (x - b_dec) @ W_enc + b_enc."""
    rng = np.random.default_rng(0)
    w_enc, b_enc = rng.standard_normal((8, 20)), rng.standard_normal(20)
    w_dec, b_dec = 3 * rng.standard_normal((20, 8)), rng.standard_normal(8)
    path = _write(tmp_path / "saev.safetensors", {"W_enc": w_enc, "b_enc": b_enc, "W_dec": w_dec, "b_dec": b_dec})
    x = rng.standard_normal((50, 8)).astype(np.float32)
    ref = torch.relu(torch.from_numpy((x - b_dec) @ w_enc + b_enc))
    top = torch.zeros_like(ref).scatter(1, ref.topk(4, dim=1).indices, ref.topk(4, dim=1).values)
    ref_recon = top.numpy() @ w_dec + b_dec
    d = dfile.load(path, channels=8, k=4)
    assert d.encoding == "encoder"
    np.testing.assert_allclose(d.decode(d.encode(x)), ref_recon, rtol=1e-4, atol=1e-4)
    # saev's current encode applies W_enc to x itself
    d2 = dfile.load(path, channels=8, k=4, subtract_center=False)
    ref2 = torch.relu(torch.from_numpy(x @ w_enc + b_enc))
    top2 = torch.zeros_like(ref2).scatter(1, ref2.topk(4, dim=1).indices, ref2.topk(4, dim=1).values)
    np.testing.assert_allclose(d2.decode(d2.encode(x)), top2.numpy() @ w_dec + b_dec, rtol=1e-4, atol=1e-4)


def test_load_overcomplete_state_dict_folds_its_batch_norm(tmp_path):
    """Overcomplete's default encoder is Linear -> BatchNorm1d -> ReLU, then TopK; its dictionary has no bias."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    enc = torch.nn.Sequential(torch.nn.Linear(8, 20), torch.nn.BatchNorm1d(20), torch.nn.ReLU())
    enc.train()
    enc(torch.randn(256, 8) * 2 + 1)  # real running statistics
    enc.eval()
    dictionary = torch.randn(20, 8)
    state = {f"encoder.final_block.{k}": v for k, v in enc.state_dict().items()}
    state["dictionary._weights"] = dictionary
    save_file(
        {k: v.float().contiguous() for k, v in state.items() if v.dtype.is_floating_point}, tmp_path / "oc.safetensors"
    )
    x = torch.randn(40, 8)
    with torch.no_grad():
        codes = enc(x)
        top = torch.zeros_like(codes).scatter(1, codes.topk(5, dim=1).indices, codes.topk(5, dim=1).values)
        ref = (top @ dictionary).numpy()
    d = dfile.load(tmp_path / "oc.safetensors", k=5)
    assert d.encoding == "encoder"
    np.testing.assert_allclose(d.decode(d.encode(x.numpy())), ref, rtol=1e-4, atol=1e-4)


def test_load_openai_and_archetypal_layouts(tmp_path):
    rng = np.random.default_rng(0)
    dec = rng.standard_normal((8, 20))  # OpenAI: decoder.weight (C, K)
    d = dfile.load(_write(tmp_path / "oai.safetensors", {"decoder.weight": dec, "pre_bias": np.ones(8)}))
    assert d.atoms.shape == (20, 8) and d.encoding == "omp"
    np.testing.assert_allclose(d.atoms[0], dec[:, 0] / np.linalg.norm(dec[:, 0]), rtol=1e-5)
    np.testing.assert_allclose(d.center, 1.0)
    cand = rng.standard_normal((30, 8))
    w = np.eye(20, 30)
    a = dfile.load(
        _write(
            tmp_path / "ra.safetensors",
            {
                "dictionary.W": w,
                "dictionary.C": cand,
                "dictionary.Relax": np.zeros((20, 8)),
                "dictionary.multiplier": np.zeros(1),
            },
        )
    )
    np.testing.assert_allclose(a.atoms, cand[:20] / np.linalg.norm(cand[:20], axis=1, keepdims=True), rtol=1e-5)


def test_load_names_the_keys_found_and_expected(tmp_path):
    path = _write(tmp_path / "odd.safetensors", {"weights": np.ones((4, 8)), "bias": np.ones(4)})
    with pytest.raises(UserError) as err:
        dfile.load(path)
    msg = str(err.value)
    assert "keys found: bias, weights" in msg and "W_dec" in msg and "\n" not in msg
    path = _write(tmp_path / "wide.safetensors", {"W_dec": np.ones((4, 8)), "W_enc": np.ones((4, 8))})
    with pytest.raises(UserError, match=r"W_dec has shape \(4, 8\), expected \(\?, 16\)"):
        dfile.load(path, channels=16)
    with pytest.raises(UserError, match=r"W_enc has shape \(4, 8\), expected \(8, 4\)"):
        dfile.load(path)
    with pytest.raises(UserError, match="no pickles"):
        dfile.load(tmp_path / "d.pt") if (tmp_path / "d.pt").write_bytes(b"x") else None
    with pytest.raises(UserError, match="not found"):
        dfile.load(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="not a readable safetensors"):
        dfile.load(tmp_path / "junk.safetensors")


# --------------------------------------------------------------------------- measures


def test_evaluate_and_stability_on_known_dictionaries():
    x, atoms = planted(n=1000, noise=0.0)
    exact = dm.Dictionary(atoms=atoms, center=np.full(24, 3.0, np.float32), k=3)
    ev = metrics.evaluate(exact, dm.array_chunks(x))
    assert ev["r2"] > 0.99 and ev["l0"] <= 3 and ev["dead"] == 0.0 and ev["rows"] == 1000
    # atoms along channels the rows never vary on are never active: dead
    flat = np.concatenate([x, np.full((len(x), 4), 1.0, np.float32)], axis=1)  # 4 constant channels
    spare = np.concatenate([np.eye(4), -np.eye(4)]).astype(np.float32)
    wide = np.block([[atoms, np.zeros((32, 4), np.float32)], [np.zeros((8, 24), np.float32), spare]])
    center = np.concatenate([exact.center, np.ones(4, np.float32)])
    ev2 = metrics.evaluate(dm.Dictionary(atoms=wide, center=center, k=3), dm.array_chunks(flat))
    assert ev2["dead"] == pytest.approx(8 / 40) and ev2["r2"] > 0.99
    # half the atoms missing: the fit is worse
    ev3 = metrics.evaluate(dm.Dictionary(atoms=atoms[:16], center=exact.center, k=3), dm.array_chunks(x))
    assert ev3["r2"] < 0.8
    rng = np.random.default_rng(5)
    perm = rng.permutation(32)
    rows, cols, cos = metrics.match_atoms(atoms, atoms[perm])
    np.testing.assert_array_equal(perm[cols], rows)
    assert metrics.stability(atoms, atoms[perm]) == pytest.approx(1.0)
    assert metrics.stability(atoms, -atoms) < 0.5  # opposite directions are other concepts
    # weighted by frequency: only the atoms that fire count
    half = atoms.copy()
    half[16:] = -half[16:]
    assert metrics.stability(atoms, half) < 0.9
    assert metrics.stability(atoms, half, weights=np.r_[np.ones(16), np.zeros(16)]) == pytest.approx(1.0)
    per_atom = metrics.atom_stability(atoms, half[perm])
    np.testing.assert_allclose(per_atom[:16], 1.0, atol=1e-5)
    assert (per_atom[16:] < 0.9).all()
    assert metrics.atom_stability(atoms, atoms[:20])[20:].tolist() == [0.0] * 12  # unmatched


# --------------------------------------------------------------------------- summaries


def test_per_concept_summaries_by_hand():
    codes = np.array([[1.0, 0, 0], [3.0, 0, 0], [0, 2.0, 0], [1.0, 1.0, 0]], np.float32)
    for c in (codes, summaries.sparse_codes(*_sparse(codes), 3)):
        np.testing.assert_allclose(summaries.frequency(c), [0.75, 0.5, 0.0])
        np.testing.assert_array_equal(summaries.top_rows(c, 2), [[1, 0], [2, 3], [-1, -1]])
        # one row per image: rows 0 and 1 are the same image, so concept 0's second exemplar is row 3
        np.testing.assert_array_equal(summaries.top_rows(c, 2, group=np.array([7, 7, 8, 9]))[0], [1, 3])
        attr_class = np.array([[0, 1], [1, 2], [2, -1], [0, 2]])
        attr_value = np.array([[0.5, 0.1], [0.2, 0.4], [0.9, 0.0], [0.3, -0.2]])
        weights, label = summaries.class_weights(c, attr_class, attr_value, n_classes=4)
        # concept 0: rows 0 (z 1), 1 (z 3), 3 (z 1); class 0: (1*0.5 + 1*0.3) / 5, class 2: (3*0.4 - 0.2) / 5
        np.testing.assert_allclose(weights[0], [0.16, (0.1 + 0.6) / 5, 1.0 / 5, 0.0], rtol=1e-5)
        np.testing.assert_array_equal(label, [2, 2, -1])
        coords = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        centroid, spread = summaries.placement(c, coords)
        np.testing.assert_allclose(centroid[0], [0.6, 0.2])
        np.testing.assert_allclose(centroid[1], [0.0, 1.0])
        np.testing.assert_allclose(centroid[2], [-1, -1])
        assert spread[1] == pytest.approx(0.0) and spread[0] > 0.3 and spread[2] == 0.0


def _sparse(codes):
    idx = np.argsort(-codes, axis=1)[:, :2]
    return idx, np.take_along_axis(codes, idx, 1)


def test_decompose_finds_a_cells_concepts_and_their_share():
    rng = np.random.default_rng(3)
    atoms = rng.standard_normal((50, 30)).astype(np.float32)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    d = dm.Dictionary(atoms=atoms, center=np.ones(30, np.float32), k=4)
    direction = 1.0 + 3 * atoms[4] + 2 * atoms[9] + 1 * atoms[33]
    noise = rng.standard_normal(30).astype(np.float32)
    dirs = np.stack([direction, direction + 2 * noise, np.ones(30, np.float32)])
    idx, w, share = summaries.decompose(dirs, d, n_terms=3)
    np.testing.assert_array_equal(idx[0], [4, 9, 33])
    np.testing.assert_allclose(w[0], [3, 2, 1], atol=1e-4)
    assert share[0] > 0.999 and 0.1 < share[1] < 0.95 and share[2] == 0.0 and (idx[2] == -1).all()


def test_encode_stream_keeps_row_order():
    x, _ = planted(n=700)
    d = dm.Dictionary(atoms=planted()[1], center=np.full(24, 3.0, np.float32), k=3)
    codes = summaries.encode_stream(d, dm.array_chunks(x, 99))
    np.testing.assert_allclose(codes.toarray(), d.encode(x), atol=1e-6)


# --------------------------------------------------------------------------- real activations


@pytest.mark.slow
def test_real_activations_of_a_tiny_model_on_photos(tiny_model, photos):
    """Post-ReLU maps of TinyNet on 24 real photos: every method beats PCA at the same number of terms."""
    from PIL import Image

    images = sorted(p for p in photos.rglob("*") if p.is_file())
    batch = torch.stack(
        [
            torch.from_numpy(np.asarray(Image.open(p).convert("RGB").resize((32, 32)), np.float32) / 255).permute(
                2, 0, 1
            )
            for p in images
        ]
    )
    with torch.no_grad():
        maps = tiny_model.features(batch)  # (24, 16, 16, 16), post-ReLU
    x = maps.permute(0, 2, 3, 1).reshape(-1, 16).numpy()
    train, held = dm.split(dm.array_chunks(x, 1000), 0.2)
    tr = np.concatenate(list(train()))
    he = np.concatenate(list(held()))
    mean = tr.mean(0)
    _, _, vt = np.linalg.svd(tr - mean, full_matrices=False)
    pca = ((he - mean) @ vt[:2].T) @ vt[:2] + mean
    pca_r2 = 1 - ((he - pca) ** 2).sum() / ((he - he.mean(0)) ** 2).sum()
    for method in ("topk", "nmf"):
        d = learn.learn(train, method=method, size=32, k=2, epochs=20, batch_size=256, seed=0, threads=1)
        ev = metrics.evaluate(d, held)
        assert ev["r2"] > pca_r2 and ev["l0"] <= 2 and ev["dead"] <= 0.25, (method, ev, pca_r2)


def test_exemplar_purity_counts_exemplars_predicted_as_the_label():
    rows = np.array([[0, 1, 2, -1], [3, 4, -1, -1], [5, -1, -1, -1], [-1, -1, -1, -1], [0, 1, -1, -1]])
    row_pred = np.array([2, 2, 7, 1, -1, 4])  # row 4's photo has no known prediction
    label = np.array([2, 1, 3, 0, -1])
    purity, counted = summaries.exemplar_purity(rows, row_pred, label)
    assert counted.tolist() == [3, 1, 1, 0, 0]  # padding, unknown predictions and a missing label are not counted
    assert purity.tolist() == pytest.approx([2 / 3, 1.0, 0.0, 0.0, 0.0])
    assert np.isfinite(purity).all()
    with pytest.raises(ValueError, match="K = 5"):
        summaries.exemplar_purity(rows[:3], row_pred, label)
