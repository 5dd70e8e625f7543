"""featviz._outputs: outputs to logits and target classes (shared by CAMs and metrics)."""

from __future__ import annotations

import pytest
import torch

from featviz._outputs import as_logits, call_target, target_classes

LOGITS = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]])


def test_target_classes_forms():
    assert target_classes(LOGITS, None, 2).tolist() == [1, 0]
    assert target_classes(LOGITS, 2, 2).tolist() == [2, 2]
    assert target_classes(LOGITS, [0, 2], 2).tolist() == [0, 2]
    assert target_classes(LOGITS, torch.tensor(1), 2).tolist() == [1, 1]


@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        (True, TypeError, "must not be a bool"),
        ("cat", TypeError, "Got str 'cat'"),
        ([0.5, 1.0], TypeError, "one int class per image"),
        ([0, 1, 2], ValueError, "one entry per image: the batch has 2"),
        (3, ValueError, r"range \[0, 2\]"),
        ([-1, 0], ValueError, r"range \[0, 2\]"),
    ],
)
def test_target_classes_errors_name_the_parameter(target, error, match):
    with pytest.raises(error, match=match) as exc:
        target_classes(LOGITS, target, 2)
    assert "'target' parameter" in str(exc.value)


def test_as_logits_says_what_to_pass():
    assert as_logits(LOGITS) is LOGITS
    with pytest.raises(ValueError, match="Pass a callable target"):
        as_logits({"out": LOGITS})
    with pytest.raises(ValueError, match=r"shape \(2, 3, 1\)"):
        as_logits(LOGITS[..., None])


def test_call_target_checks_one_score_per_image():
    assert call_target(lambda o: o[:, 0], LOGITS, 2).tolist() == pytest.approx([0.1, 3.0])
    with pytest.raises(ValueError, match=r"shape \(2,\).*Got \(2, 3\)"):
        call_target(lambda o: o, LOGITS, 2)


def test_target_on_another_device_that_cannot_be_copied():
    from featviz._outputs import target_on

    meta = torch.zeros(2, dtype=torch.long, device="meta")
    with pytest.raises(ValueError, match=r"'target' parameter is a tensor on device meta"):
        target_on(meta, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"'target' parameter is a tensor on device meta"):
        target_classes(LOGITS, meta, 2)
    assert target_on(torch.tensor([1, 0]), torch.device("cpu")).tolist() == [1, 0]
