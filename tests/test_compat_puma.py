"""Our predictions file read the way puma's ``Results`` and ``AuxResults`` read theirs.

puma-hep cannot be installed next to our pins, so this test does what it does with the library
it reads through (atlas-ftag-tools' ``H5Reader``): tagger probabilities ``<tagger>_p<flavour>``
(named after ``ftag.Flavours``) with the truth label and pT from ``/jets``, and the auxiliary
outputs ``<tagger>_aux_TrackOrigin`` / ``<tagger>_aux_VertexIndex`` with their truth labels
``ftagTruthOriginLabel`` / ``ftagTruthVertexIndex`` from ``/tracks``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ftag import Flavours
from ftag.hdf5 import H5Reader

from salt.cli.main import main
from tests.helpers import demo_fit_args

TAGGER = "pumaread"
JET_LABEL = "HadronConeExclTruthLabelID"
AUX_TRUTH = {"vertexing": "ftagTruthVertexIndex", "track_origin": "ftagTruthOriginLabel"}
AUX_OUTPUT = {"vertexing": "aux_VertexIndex", "track_origin": "aux_TrackOrigin"}


@pytest.fixture(scope="module")
def predictions(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("puma")
    assert main(demo_fit_args(demo_dir, root, TAGGER, "--trainer.logger=false")) == 0
    run = root / f"{TAGGER}_run"
    args = ["test", "--config", str(run / "config.yaml"), "--data.num_workers=0"]
    assert main([*args, "--evaluation.write_constituents=true"]) == 0
    (path,) = run.glob("ckpts/*__test_test.h5")
    return path


@pytest.mark.slow
def test_results_reads_tagger_probabilities(predictions: Path):
    flavours = [Flavours[name] for name in ("bjets", "cjets", "ujets", "taujets")]
    variables = [JET_LABEL, "pt", *(f"{TAGGER}_{f.px}" for f in flavours)]
    jets = H5Reader(predictions, precision="full", shuffle=False).load({"jets": variables})["jets"]
    assert len(jets) > 0
    probs = np.stack([jets[f"{TAGGER}_{f.px}"] for f in flavours], axis=-1)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    # puma selects flavours with ftag's cuts on the jets' truth label
    for flavour, code in zip(flavours[:3], (5, 4, 0)):
        _, selected = flavour.cuts(jets)
        assert len(selected) == int((jets[JET_LABEL] == code).sum()) > 0
    assert np.median(jets["pt"]) > 1000  # MeV, as puma expects (it scales by 0.001)


@pytest.mark.slow
def test_aux_results_reads_track_outputs(predictions: Path):
    aux = [f"{TAGGER}_{name}" for name in AUX_OUTPUT.values()]
    reader = H5Reader(predictions, precision="full", shuffle=False, global_objects_name="tracks")
    tracks = reader.load({"tracks": [*aux, *AUX_TRUTH.values(), "valid"]})["tracks"]
    jets = H5Reader(predictions, precision="full", shuffle=False).load({"jets": [JET_LABEL]})
    assert tracks.ndim == 2 and len(tracks) == len(jets["jets"])
    for task, name in AUX_OUTPUT.items():
        output = tracks[f"{TAGGER}_{name}"]
        assert output.dtype.kind == "i", f"{name}: puma compares integers"
        valid = tracks["valid"]
        assert (output[~valid] == -1).all()
        truth = tracks[AUX_TRUTH[task]]
        assert truth.shape == output.shape
    origin = tracks[f"{TAGGER}_aux_TrackOrigin"][tracks["valid"]]
    assert origin.min() >= 0 and origin.max() < 8  # the FTAG origin classes puma knows
    # puma's vertexing metrics group tracks of one jet by equal indices
    vertex = tracks[f"{TAGGER}_aux_VertexIndex"]
    assert (vertex[tracks["valid"]] >= 0).all()
