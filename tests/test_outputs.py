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


class _ModelOutput(dict):
    """Stand-in for a Hugging Face ModelOutput: a dict that also has attributes."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.__dict__.update(kw)


def test_logits_found_in_dicts_tuples_and_model_outputs():
    from collections import namedtuple

    from featviz._outputs import find_logits

    aux = torch.zeros(2, 7)
    assert find_logits({"logits": LOGITS, "hidden": aux}) is LOGITS
    assert find_logits(_ModelOutput(loss=None, logits=LOGITS)) is LOGITS
    assert find_logits((LOGITS, aux)) is LOGITS
    assert find_logits(namedtuple("GoogLeNetOutputs", "logits aux")(LOGITS, aux)) is LOGITS
    assert find_logits({"out": LOGITS}) is None
    assert find_logits([{"boxes": torch.zeros(0, 4)}]) is None
    assert target_classes(_ModelOutput(logits=LOGITS), None, 2).tolist() == [1, 0]
    assert target_classes({"logits": LOGITS}, [2, 1], 2).tolist() == [2, 1]


def test_as_logits_errors_say_what_to_pass_for_each_output():
    detections = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0), "scores": torch.zeros(0)}]
    with pytest.raises(ValueError, match=r"list of 1 dicts .*BoxTarget"):
        as_logits(detections)
    with pytest.raises(ValueError, match=r"keys \['out', 'aux'\].*SegmentationTarget"):
        as_logits({"out": torch.zeros(2, 3, 4, 4), "aux": torch.zeros(2, 3, 4, 4)})
    with pytest.raises(ValueError, match=r"lambda o: o\['emb'\]\[:, k\]"):
        as_logits({"emb": torch.zeros(2, 3, 4)})
    yolo = torch.zeros(2, 4 + 80, 21)  # ultralytics: (pred, raw) and ((pred, proto), raw)
    for outputs in ((yolo, {}), ((yolo, torch.zeros(2, 32, 8, 8)), {})):
        with pytest.raises(ValueError, match=r"YOLO-style predictions .*BoxTarget\(top_k=1\)"):
            as_logits(outputs)


def test_logits_rows_must_match_the_batch():
    with pytest.raises(ValueError, match="logits have 2 rows but the batch has 3 images"):
        target_classes(LOGITS, None, 3)
    with pytest.raises(ValueError, match="2 rows but the batch has 1"):
        as_logits(LOGITS, 1)
