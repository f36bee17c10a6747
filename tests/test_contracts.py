"""The contracts between SaltModel and its blocks, and salt's import graph."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from salt.models import GlobalAttentionPooling, InitNet, SaltModel, TransformerEncoder
from salt.models.contracts import Backbone, Encoder, MultiStreamEncoder, backbone_sizes
from salt.models.cross_attention import TransformerCrossAttentionEncoder
from salt.models.zoo import MLP, DeepSets, FusionBackbone
from salt.tasks import ClassificationTask, jet_classifications, main_task

SALT = Path(__file__).resolve().parents[1] / "salt"
VARS = {"jets": ["pt", "eta"], "tracks": ["d0", "z0", "dphi"]}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SALT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module-level imports among salt's modules; importing a submodule runs its parent
    packages first, while a package importing its own submodules cannot close a cycle."""
    modules = {_module_name(p): p for p in SALT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            body = [node]
            if isinstance(node, ast.If):
                if "TYPE_CHECKING" in ast.unparse(node.test):
                    continue
                body = node.body
            for stmt in body:
                if isinstance(stmt, ast.Import):
                    edges |= {a.name for a in stmt.names if a.name in modules}
                elif isinstance(stmt, ast.ImportFrom) and stmt.module and not stmt.level:
                    subs = {f"{stmt.module}.{a.name}" for a in stmt.names}
                    found = subs & modules.keys()
                    edges |= found
                    if len(found) < len(subs) and stmt.module in modules:
                        edges.add(stmt.module)
        parts = name.split(".")
        edges |= {".".join(parts[:i]) for i in range(1, len(parts))}
        graph[name] = {m for m in edges if m != name and not m.startswith(f"{name}.")}
    return graph


def test_salt_has_no_import_cycles():
    graph = _import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, cycles


def _init_net(width: int) -> InitNet:
    return InitNet("tracks", {"input_size": 3, "output_size": width})


def _task(size: int) -> ClassificationTask:
    return ClassificationTask(
        "jets_classification",
        "jets",
        "flavour_label",
        {"input_size": size},
        class_names=["b", "c", "u"],
    )


def test_encoders_follow_their_contracts():
    encoder = TransformerEncoder(8, 1, {"num_heads": 2}, out_dim=6)
    assert isinstance(encoder, Encoder) and not isinstance(encoder, MultiStreamEncoder)
    assert (encoder.embed_dim, encoder.output_size) == (8, 6)
    cross = TransformerCrossAttentionEncoder(["tracks", "electrons"], 8, num_layers=1)
    assert isinstance(cross, MultiStreamEncoder)


def test_salt_model_names_an_encoder_that_breaks_the_contract():
    pool = GlobalAttentionPooling(8)
    with pytest.raises(TypeError, match=r"model\.encoder: Linear has no int embed_dim"):
        SaltModel([_init_net(8)], [_task(8)], pool, encoder=nn.Linear(8, 8))
    wrong = TransformerEncoder(16, 1, {"num_heads": 2})
    with pytest.raises(ValueError, match=r"model\.encoder\.embed_dim=16 but the init nets"):
        SaltModel([_init_net(8)], [_task(16)], GlobalAttentionPooling(16), encoder=wrong)


class _Sizeless(nn.Module):
    def forward(self, inputs: dict[str, Tensor], pad_masks: dict[str, Tensor], raw: dict):
        return inputs["jets"], {}


def test_salt_model_names_a_backbone_that_breaks_the_contract():
    with pytest.raises(TypeError, match=r"model\.backbone: _Sizeless has no output_size"):
        SaltModel(tasks=[_task(2)], backbone=_Sizeless())


def test_backbone_sizes_from_config_match_the_built_backbone():
    torch.manual_seed(0)
    deep = {"out_dim": 6, "embed_dim": 5, "phi_layers": [4], "rho_layers": [4]}
    fusion = {
        "out_dim": 7,
        "mode": "add",
        "jagged": {"class_path": "salt.models.zoo.DeepSets", "init_args": deep},
        "flat": {"class_path": "salt.models.zoo.MLP", "init_args": {"out_dim": 3}},
    }
    built = FusionBackbone(DeepSets(VARS, **deep), MLP(VARS, out_dim=3), "add", 7, VARS)
    sizes = backbone_sizes("salt.models.zoo.FusionBackbone", fusion, "model.backbone")
    assert isinstance(built, Backbone)
    assert sizes == (built.output_size, built.constituent_size) == (7, 5)
    inputs = {"jets": torch.randn(2, 2), "tracks": torch.randn(2, 4, 3)}
    masks = {"tracks": torch.tensor([[False, False, True, True]] * 2)}
    pooled, constituents = built(inputs, masks, inputs)
    assert pooled.shape == (2, sizes.jet)
    assert constituents["tracks"].shape == (2, 4, sizes.constituent)
    assert MLP.config_sizes({"out_dim": 3}) == (3, None)  # jet-level: no constituent outputs


def test_main_task_is_the_first_jet_classification():
    track = ClassificationTask(
        "origin", "tracks", "ftagTruthOriginLabel", {"input_size": 4}, class_names=["a", "b"]
    )
    jet = _task(4)
    assert main_task([track, jet], "jets") is jet
    assert main_task([track], "jets") is None


def test_every_jet_classification_logs_accuracy_but_only_the_first_is_main():
    first, second = _task(4), _task(4)
    second.name = "second"
    assert jet_classifications([first, second], "jets") == [first, second]
    assert main_task([first, second], "jets") is first


class _Labelled:
    def label_fields(self) -> dict[str, list[str]]:
        return {"jets": ["flavour_label", "pt"], "tracks": ["ftagTruthOriginLabel"]}


def test_data_module_asks_the_model_for_its_labels():
    from salt.data.datamodule import SaltDataModule

    data = SaltDataModule("train.h5", "val.h5", "norm.yaml", {"jets": ["pt"], "tracks": ["d0"]})
    data.request_labels({"jets": ["pt"]})  # a carried jet field, asked for first
    data.read_labels_of(_Labelled())
    assert data.label_fields == {
        "jets": ["pt", "flavour_label"],
        "tracks": ["ftagTruthOriginLabel"],
    }
