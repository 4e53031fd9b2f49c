import pytest
import torch

from itnet_geo.datasets import MODELNET10_CLASSES, TEST_COUNTS
from itnet_geo.train import (
    class_accuracy,
    confusion_matrix,
    overall_accuracy,
    read_class_weights,
    weighted_accuracy,
)


def test_confusion_matrix_counts_true_down_pred_across():
    pred = torch.tensor([0, 1, 1, 2, 2, 2])
    target = torch.tensor([0, 0, 1, 2, 2, 1])
    cm = confusion_matrix(pred, target, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 2]]
    assert cm.dtype == torch.long


def test_accuracies():
    cm = torch.tensor([[3, 1, 0], [0, 1, 1], [0, 0, 0]])
    assert overall_accuracy(cm) == pytest.approx(4 / 6)
    # class 2 has no sample: it does not count in the mean
    assert class_accuracy(cm) == pytest.approx((3 / 4 + 1 / 2) / 2)
    empty = torch.zeros(2, 2, dtype=torch.long)
    assert overall_accuracy(empty) == 0.0
    assert class_accuracy(empty) == 0.0


def test_confusion_matrix_size_mismatch():
    with pytest.raises(ValueError, match="labels"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 2)


def test_weighted_accuracy_is_the_overall_accuracy_of_a_resized_split():
    cm = torch.tensor([[8, 2, 0], [1, 3, 0], [0, 0, 5]])  # 80, 75, 100 %
    # weights = the support: the overall accuracy itself
    assert weighted_accuracy(cm, cm.sum(dim=1)) == pytest.approx(overall_accuracy(cm))
    # equal weights: the mean class accuracy
    assert weighted_accuracy(cm, torch.ones(3)) == pytest.approx(class_accuracy(cm))
    # a split with 100, 20 and 0 shapes of the classes
    expected = (100 * 0.8 + 20 * 0.75) / 120
    assert weighted_accuracy(cm, torch.tensor([100, 20, 0])) == pytest.approx(expected)
    # the split this confusion would become, counted out: same figure
    resized = torch.tensor([[80, 20, 0], [5, 15, 0], [0, 0, 0]])
    assert overall_accuracy(resized) == pytest.approx(expected)


def test_weighted_accuracy_refuses_what_it_cannot_weigh():
    cm = torch.tensor([[3, 1, 0], [0, 1, 1], [0, 0, 0]])  # class 2: no sample
    assert weighted_accuracy(cm, torch.tensor([1.0, 1.0, 0.0])) == pytest.approx(
        class_accuracy(cm)
    )
    with pytest.raises(ValueError, match=r"classes \[2\] have weight but no sample"):
        weighted_accuracy(cm, torch.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        weighted_accuracy(cm, torch.tensor([1.0, -1.0, 0.0]))
    with pytest.raises(ValueError, match="all zero"):
        weighted_accuracy(cm, torch.zeros(3))
    with pytest.raises(ValueError, match="2 weights for 3 classes"):
        weighted_accuracy(cm, torch.ones(2))


def test_official_test_counts():
    forty = TEST_COUNTS["40"]
    assert len(forty) == 40 and sum(forty.values()) == 2468
    assert (forty["night_stand"], forty["bathtub"], forty["xbox"]) == (86, 50, 20)
    ten = TEST_COUNTS["10"]
    assert set(ten) == set(MODELNET10_CLASSES) and sum(ten.values()) == 908
    assert all(ten[c] == forty[c] for c in ten)
    assert read_class_weights("modelnet40-test") == {
        c: float(n) for c, n in forty.items()
    }


def test_read_class_weights_from_json(tmp_path):
    path = tmp_path / "w.json"
    path.write_text('{"cube": 3, "sphere": 0.5}')
    assert read_class_weights(path) == {"cube": 3.0, "sphere": 0.5}
    assert read_class_weights(str(path)) == {"cube": 3.0, "sphere": 0.5}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "are not JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ("{}", r"got dict \(empty\)"),
        ('{"cube": -1}', "the weight of 'cube' is -1"),
        ('{"cube": "many"}', "the weight of 'cube' is 'many'"),
        ('{"cube": true}', "the weight of 'cube' is True"),
    ],
)
def test_read_class_weights_names_the_file_and_the_fault(tmp_path, text, message):
    path = tmp_path / "w.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_class_weights(path)
    assert str(path) in str(info.value)


def test_read_class_weights_of_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="neither a file nor one of modelnet40-test"):
        read_class_weights(tmp_path / "none.json")
