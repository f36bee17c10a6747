"""A batch with no labelled constituent of a type adds nothing to that task's loss.

Small batches (validation remainders, rare input types such as electrons) can hold jets none
of which has one valid constituent; the task's mean over nothing must be 0, not NaN that
stops the run.
"""

from __future__ import annotations

import pytest
import torch

from salt.data.batch import EVENT, EVENT_WEIGHT
from salt.tasks.classification import ClassificationTask


def origin_task() -> ClassificationTask:
    return ClassificationTask(
        "track_origin", "tracks", "ftagTruthOriginLabel", {"input_size": 4}, class_names=["a", "b"]
    )


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_constituent_loss_of_a_batch_without_constituents_is_zero(
    packed: bool, weighted: bool, monkeypatch: pytest.MonkeyPatch
):
    if not packed:
        monkeypatch.setattr("salt.tasks.classification.packing_enabled", lambda x: False)
    torch.manual_seed(0)
    task = origin_task()
    x = torch.randn(3, 5, 4, requires_grad=True)
    labels = {"tracks": {"ftagTruthOriginLabel": torch.randint(0, 2, (3, 5))}}
    if weighted:
        labels[EVENT] = {EVENT_WEIGHT: torch.ones(3)}
    all_padded = torch.ones(3, 5, dtype=torch.bool)

    _, loss = task(x, labels, all_padded)

    assert loss is not None and loss.item() == 0.0
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # one real constituent: the loss is its loss again
    one_real = all_padded.clone()
    one_real[1, 2] = False
    _, loss = task(x, labels, one_real)
    assert loss is not None and loss.item() > 0.0
