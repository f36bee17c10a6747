"""Shared fixtures: tiny hand-made FTAG files (exact checks) and a small demo dataset."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path

import pytest

from tests.helpers import write_norm_dict, write_tiny_file

if os.environ.get("PYTEST_XDIST_WORKER"):
    # ``pytest -n 2`` on two cores: one thread per worker (and per process a test starts), so
    # the workers share the cores instead of fighting over them
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

if importlib.util.find_spec("moto") and importlib.util.find_spec("boto3"):
    from tests.s3_server import s3, s3_server  # noqa: F401  (fixtures for every test module)


@pytest.fixture
def tiny_files(tmp_path: Path) -> dict[str, Path]:
    """Two train files (rows 0..299 and 300..499), plus a norm dict."""
    return {
        "train_a": write_tiny_file(tmp_path / "train_a.h5", 300, 0),
        "train_b": write_tiny_file(tmp_path / "train_b.h5", 200, 300),
        "norm": write_norm_dict(tmp_path / "norm.yaml"),
    }


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo dataset shared by the end-to-end tests."""
    from salt.data.demo import generate_demo_data

    out = tmp_path_factory.mktemp("demo")
    generate_demo_data(out, n_train=3000, n_val=1000, n_test=1000, seed=1, block_size=2000)
    return out


@pytest.fixture(autouse=True)
def log_handlers_on_current_stderr():
    """Point the stream handlers of salt's, Lightning's and Comet's loggers at this test's stderr.

    They are created once, bound to the stderr of that moment (an earlier test's capture, closed
    since); rebinding them lets captured stderr hold what a user would see, and keeps later
    tests free of "I/O operation on closed file" logging errors.
    """
    names = ("salt", "lightning", "lightning.pytorch", "lightning.fabric", "comet_ml")
    handlers = [
        handler
        for name in names
        for handler in logging.getLogger(name).handlers
        if type(handler) is logging.StreamHandler
    ]
    saved = [handler.stream for handler in handlers]
    for handler in handlers:
        handler.stream = sys.stderr  # not setStream: it flushes the old, maybe closed, stream
    yield
    for handler, stream in zip(handlers, saved):
        handler.stream = stream


# Modules whose tests train, resume, export or evaluate real runs, or start servers (seconds to
# minutes each), and single slow tests of otherwise fast modules: marked slow here, in one
# place, so that ``make test-fast`` (``-m "not slow"``) runs the unit tests in about a minute.
# A new slow test elsewhere is marked where it is written (``@pytest.mark.slow``).
SLOW_MODULES = {
    "test_configs",
    "test_distributed",
    "test_end_to_end",
    "test_errors",
    "test_finetune",
    "test_kill_points",
    "test_loggers",
    "test_mixing",
    "test_mup",
    "test_onnx_export",
    "test_performance_writer",
    "test_predict",
    "test_profile",
    "test_resume",
    "test_resume_state",
    "test_s3",
    "test_sculpting",
    "test_toolbox",
}
SLOW_TESTS = (
    "tests/test_docs.py::test_mkdocs_build_strict",
    "tests/test_docs.py::test_yaml_block",
    "tests/test_evaluation.py::test_evaluate_predictions",
    "tests/test_evaluation_cli.py::test_compare",
    "tests/test_evaluation_cli.py::test_evaluate_recomputes",
    "tests/test_fuzz_h5.py::test_flipped_bits",
    "tests/test_tasks_aux.py::test_tasks_train_on_synthetic_problems",
    "tests/test_zoo_flat_jagged.py::test_fit_and_test_end_to_end",
    "tests/test_zoo_flat_jagged.py::test_a_few_steps_reduce_the_loss",
    "tests/test_zoo_flat_jagged.py::test_config_fragments_replace_the_gn2_network",
    "tests/test_zoo_point.py::test_fit_then_test_from_the_command_line",
)


# Modules whose tests share an expensive module- or session-scoped fixture (a trained run, an
# exported network, the documentation pages that build on each other): under ``pytest -n 2
# --dist loadgroup`` each runs on one worker, so the fixture is built once, not once per worker.
SHARED_FIXTURE_MODULES = {
    "test_athena",
    "test_compat_puma",
    "test_demo_data",
    "test_docs",
    "test_end_to_end",
    "test_errors",
    "test_fuzz_h5",
    "test_inspect",
    "test_onnx_export",
    "test_profile",
    "test_s3",
    "test_safety_checkpoints",
    "test_safety_outputs",
    "test_zoo_point",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = Path(str(item.fspath)).stem
        if module in SLOW_MODULES or item.nodeid.startswith(SLOW_TESTS):
            item.add_marker(pytest.mark.slow)
        if module in SHARED_FIXTURE_MODULES:
            item.add_marker(pytest.mark.xdist_group(module))
