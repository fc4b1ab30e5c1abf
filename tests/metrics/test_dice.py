import numpy as np
import pytest

from xssr.metrics import confusion_counts, dice_from_counts, dice_per_image, summarise_dice


def test_dice_by_hand():
    # image 0: 2 true positives, 1 false positive, 1 false negative -> 2*2/(4+1+1) = 2/3
    target = np.array([[[1, 1, 1, 0]], [[0, 0, 0, 0]], [[1, 0, 0, 0]]])
    pred = np.array([[[1, 1, 0, 1]], [[0, 0, 0, 0]], [[0, 0, 0, 1]]])
    tp, fp, fn = confusion_counts(pred, target)
    assert tp.tolist() == [2, 0, 0] and fp.tolist() == [1, 0, 1] and fn.tolist() == [1, 0, 1]
    dice = dice_from_counts(tp, fp, fn)
    # image 1 has neither prediction nor target: perfect agreement by convention
    np.testing.assert_allclose(dice, [2 / 3, 1.0, 0.0])


def test_threshold_is_inclusive_at_half():
    target = np.ones((1, 2, 2))
    assert dice_per_image(np.full((1, 2, 2), 0.5), target)[0] == 1.0
    assert dice_per_image(np.full((1, 2, 2), 0.49), target)[0] == 0.0


def test_summary_per_site():
    summary = summarise_dice(np.array([1.0, 0.5, 0.0]), ["a", "a", "b"])
    assert summary["overall"]["n"] == 3
    assert summary["overall"]["mean"] == pytest.approx(0.5)
    assert summary["per_site"]["a"]["mean"] == pytest.approx(0.75)
    assert summary["per_site"]["b"] == {"mean": 0.0, "std": 0.0, "n": 1}


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        confusion_counts(np.zeros((1, 2, 2)), np.zeros((1, 3, 3)))
