import pytest
import torch

from itnet_geo.train import class_accuracy, confusion_matrix, overall_accuracy


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
