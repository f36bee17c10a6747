"""The demo generator writes FTAG-format files with physics a tagger can learn from."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from salt.data.demo import (
    CLASS_NAMES,
    ELECTRON_DTYPE,
    FLAVOUR_FRACTIONS,
    JET_DTYPE,
    TRACK_DTYPE,
    TRUTH_FIELDS,
    demo_data_main,
    generate_demo_data,
    generate_jets,
)

PILEUP, FAKE, PRIMARY, FROM_B, FROM_BC, FROM_C, FROM_TAU, OTHER_SECONDARY = range(8)
SIZES = {"train": 2500, "val": 700, "test": 600}


@pytest.fixture(scope="module")
def sample() -> dict[str, np.ndarray]:
    return generate_jets(20_000, np.random.default_rng(123))


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("demo")
    paths = generate_demo_data(
        out, SIZES["train"], SIZES["val"], SIZES["test"], seed=7, block_size=1000
    )
    return out, paths


def _valid_tracks(sample: dict[str, np.ndarray], flavour: int | None = None) -> np.ndarray:
    mask = sample["tracks"]["valid"]
    if flavour is not None:
        mask = mask & (sample["jets"]["flavour_label"] == flavour)[:, None]
    return sample["tracks"][mask]


def test_dtypes_and_shapes(sample: dict[str, np.ndarray]) -> None:
    assert sample["jets"].shape == (20_000,)
    assert sample["tracks"].shape == (20_000, 40)
    assert sample["electrons"].shape == (20_000, 5)
    assert sample["jets"].dtype == JET_DTYPE
    assert sample["tracks"].dtype == TRACK_DTYPE
    assert sample["electrons"].dtype == ELECTRON_DTYPE


def test_flavour_fractions_and_labels(sample: dict[str, np.ndarray]) -> None:
    jets = sample["jets"]
    fractions = np.bincount(jets["flavour_label"], minlength=4) / len(jets)
    np.testing.assert_allclose(fractions, FLAVOUR_FRACTIONS, atol=0.015)
    hadron = np.array([5, 4, 0, 15])[jets["flavour_label"]]
    np.testing.assert_array_equal(jets["HadronConeExclTruthLabelID"], hadron)


def test_jet_kinematics(sample: dict[str, np.ndarray]) -> None:
    jets = sample["jets"]
    assert jets["pt"].min() >= 20e3 and jets["pt"].max() <= 1e6
    # A falling spectrum: far more jets at 20-40 GeV than at 200-400 GeV.
    assert ((jets["pt"] < 40e3).sum()) > 5 * ((jets["pt"] > 200e3) & (jets["pt"] < 400e3)).sum()
    assert np.abs(jets["eta"]).max() <= 2.5
    np.testing.assert_array_equal(jets["abs_eta"], np.abs(jets["eta"]))
    assert (jets["mass"] > 0).all()
    # Mass grows with pT, and b jets are heavier than light jets at the same (low) pT.
    low, high = jets["pt"] < 40e3, jets["pt"] > 200e3
    assert jets["mass"][high].mean() > 3 * jets["mass"][low].mean()
    b_low = low & (jets["flavour_label"] == 0)
    light_low = low & (jets["flavour_label"] == 2)
    assert jets["mass"][b_low].mean() > jets["mass"][light_low].mean()


def test_b_jets_have_displaced_tracks(sample: dict[str, np.ndarray]) -> None:
    def mean_abs_sd0(flavour: int) -> float:
        tracks = _valid_tracks(sample, flavour)
        return float(np.abs(tracks["IP3D_signed_d0_significance"]).mean())

    b, c, light = mean_abs_sd0(0), mean_abs_sd0(1), mean_abs_sd0(2)
    assert b > 3 * light
    assert b > c > 1.5 * light
    tracks = _valid_tracks(sample)
    sd0 = tracks["IP3D_signed_d0_significance"]
    origin = tracks["ftagTruthOriginLabel"]
    # Decay tracks are lifetime-signed positive; prompt tracks are symmetric around 0.
    assert np.median(sd0[origin == FROM_B]) > 2
    assert (sd0[origin == FROM_B] > 0).mean() > 0.75
    assert abs(np.median(sd0[origin == PRIMARY])) < 0.1
    assert 0.4 < (sd0[origin == PRIMARY] > 0).mean() < 0.6
    # Pileup has large z0, fakes large d0 compared to primary tracks.
    z0 = np.abs(tracks["z0SinTheta"])
    assert np.median(z0[origin == PILEUP]) > 20 * np.median(z0[origin == PRIMARY])
    d0 = np.abs(tracks["d0"])
    assert np.median(d0[origin == FAKE]) > 5 * np.median(d0[origin == PRIMARY])


def test_heavy_flavour_tracks_are_harder(sample: dict[str, np.ndarray]) -> None:
    jets, tracks = sample["jets"], sample["tracks"]
    frac = tracks["pt"] / jets["pt"][:, None]
    origin = tracks["ftagTruthOriginLabel"]
    in_b_jet = (jets["flavour_label"] == 0)[:, None]
    decay = in_b_jet & ((origin == FROM_B) | (origin == FROM_BC))
    fragmentation = in_b_jet & (origin == PRIMARY)
    assert frac[decay].mean() > 2 * frac[fragmentation].mean()
    # More tracks and a narrower core at high jet pT.
    low, high = jets["pt"] < 40e3, jets["pt"] > 200e3
    assert jets["n_tracks"][high].mean() > 1.5 * jets["n_tracks"][low].mean()
    dr = np.hypot(tracks["dphi"], tracks["deta"])
    primary = origin == PRIMARY
    assert dr[high[:, None] & primary].mean() < 0.7 * dr[low[:, None] & primary].mean()


def test_truth_origins_belong_to_their_flavour(sample: dict[str, np.ndarray]) -> None:
    origin = sample["tracks"]["ftagTruthOriginLabel"]
    flavour = np.broadcast_to(sample["jets"]["flavour_label"][:, None], origin.shape)
    assert set(np.unique(flavour[(origin == FROM_B) | (origin == FROM_BC)])) == {0}
    assert set(np.unique(flavour[origin == FROM_C])) == {1}
    assert set(np.unique(flavour[origin == FROM_TAU])) == {3}
    light = sample["tracks"][sample["jets"]["flavour_label"] == 2]
    light_origins = set(np.unique(light["ftagTruthOriginLabel"][light["valid"]]))
    assert light_origins == {PILEUP, FAKE, PRIMARY, OTHER_SECONDARY}
    # Every track origin and the semileptonic electrons occur.
    assert set(np.unique(origin[sample["tracks"]["valid"]])) == set(range(8))
    electrons = sample["electrons"]
    e_origin = electrons["ftagTruthOriginLabel"][electrons["valid"]]
    assert {FROM_B, FROM_BC, FROM_C} <= set(np.unique(e_origin))


def test_origins_consistent_with_vertex_indices(sample: dict[str, np.ndarray]) -> None:
    tracks = sample["tracks"]
    valid = tracks["valid"]
    origin = tracks["ftagTruthOriginLabel"].astype(np.int64)
    vertex = tracks["ftagTruthVertexIndex"].astype(np.int64)
    assert (vertex[valid] >= 0).all()
    # The primary vertex holds exactly the primary tracks.
    np.testing.assert_array_equal(vertex[valid] == 0, origin[valid] == PRIMARY)

    jet = np.broadcast_to(np.arange(len(tracks))[:, None], vertex.shape)
    displaced = valid & (vertex > 0)
    key = jet[displaced] * 64 + vertex[displaced]
    orig = origin[displaced]
    order = np.argsort(key, kind="stable")
    key, orig = key[order], orig[order]
    same_vertex = key[1:] == key[:-1]
    # Tracks sharing a displaced vertex share one decay-like origin.
    np.testing.assert_array_equal(orig[1:][same_vertex], orig[:-1][same_vertex])
    unique_keys, multiplicity = np.unique(key, return_counts=True)
    first_origin = orig[np.searchsorted(key, unique_keys)]
    singleton_origin = np.isin(first_origin, [PILEUP, FAKE])
    assert (multiplicity[singleton_origin] == 1).all()
    decay_like = [FROM_B, FROM_BC, FROM_C, FROM_TAU, OTHER_SECONDARY]
    assert np.isin(first_origin[multiplicity > 1], decay_like).all()
    # Indices within a jet are 1..k without gaps.
    n_distinct = np.bincount(unique_keys // 64, minlength=len(tracks))
    highest = np.where(valid, vertex, 0).max(axis=1)
    np.testing.assert_array_equal(n_distinct, highest)
    # A b jet's cascade charm vertex is numbered after its b vertex.
    from_b = np.where(valid & (origin == FROM_B), vertex, 99).min(axis=1)
    from_bc = np.where(valid & (origin == FROM_BC), vertex, -1).max(axis=1)
    both = (from_b < 99) & (from_bc > 0)
    assert both.sum() > 100 and (from_bc[both] > from_b[both]).all()


def test_padding_layout(sample: dict[str, np.ndarray]) -> None:
    jets = sample["jets"]
    for name, labels in (
        ("tracks", ("ftagTruthOriginLabel", "ftagTruthVertexIndex")),
        ("electrons", ("ftagTruthOriginLabel",)),
    ):
        array = sample[name]
        valid = array["valid"]
        assert (valid[:, 1:] <= valid[:, :-1]).all(), f"{name}: valid entries must come first"
        padded = array[~valid]
        assert len(padded) > 0
        for field in array.dtype.names:
            expected = -1 if field in labels else 0
            assert (padded[field] == expected).all(), f"{name}.{field} padding"
        for label in labels:
            assert (array[label][valid] >= 0).all()
    valid_tracks = sample["tracks"]["valid"]
    np.testing.assert_array_equal(jets["n_tracks"], valid_tracks.sum(axis=1))
    assert jets["n_tracks"].min() >= 1 and jets["n_tracks"].max() <= 40
    # Most jets have no electron, heavy-flavour jets more often than light jets.
    n_el = sample["electrons"]["valid"].sum(axis=1)
    assert (n_el == 0).mean() > 0.7
    assert n_el[jets["flavour_label"] == 0].mean() > 2 * n_el[jets["flavour_label"] == 2].mean()


def test_tracks_sorted_and_pass_selection(sample: dict[str, np.ndarray]) -> None:
    tracks = sample["tracks"]
    abs_sd0 = np.where(tracks["valid"], np.abs(tracks["IP3D_signed_d0_significance"]), -1)
    assert (abs_sd0[:, 1:] <= abs_sd0[:, :-1]).all()
    valid = _valid_tracks(sample)
    # A jet only keeps a failing track when it would otherwise be empty: that is rare.
    fails = (np.abs(valid["d0"]) >= 3.5) | (np.abs(valid["z0SinTheta"]) >= 5.0)
    assert fails.mean() < 1e-3


def test_hit_patterns(sample: dict[str, np.ndarray]) -> None:
    tracks = _valid_tracks(sample)
    origin = tracks["ftagTruthOriginLabel"]
    primary, fake = tracks[origin == PRIMARY], tracks[origin == FAKE]
    assert 3.5 < primary["numberOfPixelHits"].mean() < 4.8
    assert 7.5 < primary["numberOfSCTHits"].mean() < 9.5
    assert primary["numberOfInnermostPixelLayerHits"].mean() > 0.95
    assert primary["numberOfPixelHoles"].mean() < 0.1
    for field in ("numberOfPixelHits", "numberOfSCTHits"):
        assert fake[field].mean() < primary[field].mean() - 1
    assert fake["numberOfPixelHoles"].mean() > 5 * primary["numberOfPixelHoles"].mean()
    # Material interactions beyond the first layer lose the innermost hit.
    secondary = tracks[origin == OTHER_SECONDARY]
    assert secondary["numberOfInnermostPixelLayerHits"].mean() < 0.9
    # Counts are consistent with each other.
    assert (tracks["numberOfInnermostPixelLayerHits"] <= 1).all()
    ibl_shared = tracks["numberOfInnermostPixelLayerSharedHits"]
    assert (tracks["numberOfPixelSharedHits"] >= ibl_shared).all()
    assert (tracks["numberOfPixelHits"] >= tracks["numberOfPixelSharedHits"]).all()
    # Shared hits are more frequent in the dense cores of hard jets.
    jets = sample["jets"]
    shared = sample["tracks"]["numberOfPixelSharedHits"]
    prim = sample["tracks"]["ftagTruthOriginLabel"] == PRIMARY
    high = prim & (jets["pt"] > 300e3)[:, None]
    low = prim & (jets["pt"] < 40e3)[:, None]
    assert shared[high].mean() > 2 * shared[low].mean()


def test_uncertainties_match_significances(sample: dict[str, np.ndarray]) -> None:
    tracks = _valid_tracks(sample)
    # Softer tracks are measured worse.
    soft, hard = tracks["pt"] < 1e3, tracks["pt"] > 10e3
    assert tracks["phiUncertainty"][soft].mean() > 3 * tracks["phiUncertainty"][hard].mean()
    qop = tracks["qOverP"]
    p = tracks["pt"] * np.cosh(tracks["eta"])
    # q/p in 1/MeV, measured to a few percent.
    assert np.median(np.abs(np.abs(qop[hard]) * p[hard] - 1.0)) < 0.05
    assert set(np.unique(tracks["leptonID"])) <= {-13, -11, 0, 11, 13}


def test_determinism() -> None:
    first = generate_jets(500, np.random.default_rng(5))
    again = generate_jets(500, np.random.default_rng(5))
    other = generate_jets(500, np.random.default_rng(6))
    for name in first:
        assert first[name].tobytes() == again[name].tobytes()
        assert first[name].tobytes() != other[name].tobytes()


def test_files_written(demo_dir: tuple[Path, dict[str, Path]]) -> None:
    out, paths = demo_dir
    assert set(paths) == {"train", "val", "test", "norm_dict", "class_dict"}
    event_numbers = []
    for split, n in SIZES.items():
        assert paths[split] == out / f"{split}.h5"
        with h5py.File(paths[split], "r") as f:
            assert set(f) == {"jets", "tracks", "electrons"}
            assert f["jets"].shape == (n,)
            assert f["tracks"].shape == (n, 40)
            assert f["electrons"].shape == (n, 5)
            assert f["tracks"].chunks is not None
            assert [str(x) for x in f["jets"].attrs["flavour_label"]] == list(CLASS_NAMES)
            jets = f["jets"][:]
            tracks = f["tracks"].fields("valid")[:]
            np.testing.assert_array_equal(jets["n_tracks"], tracks.sum(axis=1))
            event_numbers.append(jets["eventNumber"])
            # Blocks of 1000 rows come from different streams: no repeated block.
            assert not np.array_equal(jets["pt"][:500], jets["pt"][1000:1500])
    all_events = np.concatenate(event_numbers)
    assert len(np.unique(all_events)) == len(all_events)
    assert not list(out.glob(".*partial"))


def test_files_are_reproducible(demo_dir: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    _, paths = demo_dir
    again = generate_demo_data(tmp_path, SIZES["train"], 0, 0, seed=7, block_size=1000)
    assert "val" not in again and not (tmp_path / "val.h5").exists()
    with h5py.File(paths["train"], "r") as f, h5py.File(again["train"], "r") as g:
        for name in ("jets", "tracks", "electrons"):
            assert f[name][:].tobytes() == g[name][:].tobytes()


def test_norm_dict(demo_dir: tuple[Path, dict[str, Path]]) -> None:
    _, paths = demo_dir
    norm = yaml.safe_load(paths["norm_dict"].read_text())
    assert set(norm) == {"jets", "tracks", "electrons"}
    with h5py.File(paths["train"], "r") as f:
        for name, variables in norm.items():
            data = f[name][:]
            if data.ndim == 2:
                data = data[data["valid"]]
            expected = [v for v in data.dtype.names if v not in TRUTH_FIELDS]
            assert list(variables) == expected
            assert not set(variables) & TRUTH_FIELDS
            for var, stats in variables.items():
                assert isinstance(stats["mean"], float) and stats["std"] > 0
                values = data[var].astype(np.float64)
                np.testing.assert_allclose(stats["mean"], values.mean(), rtol=1e-6, atol=1e-12)
                if values.std() > 0:
                    np.testing.assert_allclose(stats["std"], values.std(), rtol=1e-6)


def test_class_dict(demo_dir: tuple[Path, dict[str, Path]]) -> None:
    _, paths = demo_dir
    weights = yaml.safe_load(paths["class_dict"].read_text())
    jet_w = np.array(weights["jets"]["flavour_label"])
    track_w = np.array(weights["tracks"]["ftagTruthOriginLabel"])
    assert jet_w.shape == (4,) and track_w.shape == (8,)
    np.testing.assert_allclose([jet_w.mean(), track_w.mean()], 1.0)
    with h5py.File(paths["train"], "r") as f:
        flavours = np.bincount(f["jets"]["flavour_label"], minlength=4)
        tracks = f["tracks"].fields(["ftagTruthOriginLabel", "valid"])[:]
        origins = np.bincount(tracks["ftagTruthOriginLabel"][tracks["valid"]], minlength=8)
    # Weight times frequency is the same for every class.
    np.testing.assert_allclose(jet_w * flavours, (jet_w * flavours)[0], rtol=1e-9)
    present = origins > 0
    products = track_w[present] * origins[present]
    np.testing.assert_allclose(products, products[0], rtol=1e-9)


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    generate_demo_data(tmp_path, 50, 0, 0)
    before = (tmp_path / "train.h5").read_bytes()
    with pytest.raises(FileExistsError, match=r"train\.h5.*--overwrite"):
        generate_demo_data(tmp_path, 50, 0, 0, seed=1)
    assert (tmp_path / "train.h5").read_bytes() == before
    generate_demo_data(tmp_path, 50, 0, 0, seed=1, overwrite=True)
    with h5py.File(tmp_path / "train.h5", "r") as f:
        assert f["jets"].shape == (50,)


def test_tiny_sample_still_has_a_complete_norm_dict(tmp_path: Path) -> None:
    paths = generate_demo_data(tmp_path, 1, 0, 0)
    norm = yaml.safe_load(paths["norm_dict"].read_text())
    for name, dtype in (
        ("jets", JET_DTYPE),
        ("tracks", TRACK_DTYPE),
        ("electrons", ELECTRON_DTYPE),
    ):
        inputs = [v for v in dtype.names if v not in TRUTH_FIELDS]
        assert list(norm[name]) == inputs
        assert all(stats["std"] > 0 for stats in norm[name].values())


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_val"):
        generate_demo_data(tmp_path, 10, -1, 0)
    with pytest.raises(ValueError, match="all 0"):
        generate_demo_data(tmp_path, 0, 0, 0)
    with pytest.raises(ValueError, match="block_size"):
        generate_demo_data(tmp_path, 10, 0, 0, block_size=0)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--out", str(tmp_path), "--train", "200", "--val", "50", "--test", "0"]
    assert demo_data_main(argv) == 0
    report = capsys.readouterr().out
    assert "train.h5" in report and "val.h5" in report and "jets/s" in report
    assert not (tmp_path / "test.h5").exists()
    assert demo_data_main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert demo_data_main([*argv, "--overwrite", "--seed", "3"]) == 0


def test_processes_after_the_demo_data_reuses_it(tmp_path: Path):
    """``salt demo-data`` then ``salt demo-data --processes`` (as the docs write it): the second
    adds the process files without --overwrite and leaves the demo files alone."""
    out = tmp_path / "demo"
    sizes = ["--train", "300", "--val", "100", "--test", "100"]
    assert demo_data_main(["--out", str(out), *sizes]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert demo_data_main(["--out", str(out), "--processes", *sizes]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert {n: after[n] for n in before} == before
    assert {"train_ttbar.h5", "train_zprime.h5", "val_ttbar.h5", "val_zprime.h5"} <= set(after)
    assert demo_data_main(["--out", str(out), "--processes", *sizes]) == 2  # those exist now
