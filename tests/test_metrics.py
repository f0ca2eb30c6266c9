"""Metrics against values worked out by hand."""

import math

import numpy as np
import pytest
from transformers import EvalPrediction

from cmbert_hf.metrics import compute_metrics, sentiment_metrics


def test_values_worked_out_by_hand():
    y = np.array([2.0, -1.0, 0.0, 0.4, -2.6])
    p = np.array([1.0, -0.5, 0.2, -0.2, -3.5])
    m = sentiment_metrics(p, y)
    # scored as they are (-3.5 stays): |p - y| = 1, 0.5, 0.2, 0.6, 0.9
    assert m["mae"] == pytest.approx(3.2 / 5)
    dp, dy = p - p.mean(), y - y.mean()  # Pearson r written out
    assert m["corr"] == pytest.approx((dp * dy).sum() / np.sqrt((dp**2).sum() * (dy**2).sum()))
    # round(clip): p -> 1, -0, 0, -0, -3 ; y -> 2, -1, 0, 0, -3 : matches at 3 of 5
    assert m["acc7"] == pytest.approx(60.0)
    # has0: p>=0 -> T F T F F ; y>=0 -> T F T T F : 4 of 5
    assert m["acc2_has0"] == pytest.approx(80.0)
    # non0 drops the 0 label: p>0 -> T F F F ; y>0 -> T F T F : 3 of 4
    assert m["acc2_non0"] == pytest.approx(75.0)
    # original: p>0 -> T F T F F ; y>0 -> T F F T F : 3 of 5
    assert m["acc2_original"] == pytest.approx(60.0)


def test_f1_conventions_and_the_original_swap():
    y = np.array([1.0, 1.0, 1.0, -1.0])
    p = np.array([1.0, 1.0, -1.0, -1.0])
    m = sentiment_metrics(p, y)
    # truth {3 pos, 1 neg}: F1(pos) = 2*1*(2/3)/(1+2/3) = 0.8, F1(neg) = 2*0.5*1/1.5 = 2/3
    assert m["f1_has0"] == pytest.approx((3 * 0.8 + 1 * 2 / 3) / 4 * 100)
    # swapped arguments weight by the predictions' support {2 pos, 2 neg}
    assert m["f1_original"] == pytest.approx((2 * 0.8 + 2 * 2 / 3) / 4 * 100)


def test_ties_at_zero_and_rounding_of_halves():
    y = np.array([0.0, 0.0, 2.5, -0.5, 3.4])
    p = np.array([0.0, -0.1, 2.6, 0.4, 9.0])
    m = sentiment_metrics(p, y)
    # Halves round to even like the original's numpy (y 2.5 -> 2, not 3, so p 2.6 -> 3 misses it);
    # -0.1 -> -0 equals 0; 9 clips to 3 and meets 3.4 -> 3.
    assert m["acc7"] == pytest.approx(80.0)
    # has0: 0 >= 0 counts as positive on both sides
    assert m["acc2_has0"] == pytest.approx(60.0)  # p>=0: T F T T T ; y>=0: T T T F T
    # non0 keeps 2.5, -0.5, 3.4: p>0 T T T vs y>0 T F T
    assert m["acc2_non0"] == pytest.approx(200 / 3)


def test_acc7_by_hand_includes_negative_zero():
    assert sentiment_metrics([-0.1, 0.49], [0.0, 0.51])["acc7"] == pytest.approx(50.0)


def test_compute_metrics_takes_trainer_predictions_and_returns_floats():
    logits = (np.array([[0.5], [-1.0], [2.0]]), np.zeros((3, 4, 4)))
    out = compute_metrics(EvalPrediction(predictions=logits, label_ids=np.array([1.0, -1.0, 1.5])))
    assert all(type(v) is float for v in out.values())
    assert out["mae"] == pytest.approx(1.0 / 3)


def test_constant_predictions_have_undefined_corr():
    assert math.isnan(sentiment_metrics([1.0, 1.0], [0.0, 1.0])["corr"])


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="one length"):
        sentiment_metrics([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-empty"):
        sentiment_metrics([], [])
    with pytest.raises(ValueError, match="predictions hold NaN or inf at index 1"):
        sentiment_metrics([1.0, np.nan], [1.0, 2.0])


def test_non0_of_all_zero_labels_is_undefined_not_an_error():
    metrics = sentiment_metrics([0.5, -1.0], [0.0, 0.0])
    assert np.isnan(metrics["acc2_non0"]) and np.isnan(metrics["f1_non0"])
    assert metrics["acc2_has0"] == 50.0 and metrics["mae"] == 0.75


def test_only_acc7_clips_outputs_beyond_the_label_range():
    # MAE and Corr score the output as it is (as the CM-BERT and MMSA code did); Acc7 rounds it clipped: 4.5 -> 3.
    m = sentiment_metrics([4.5, -3.2, 1.0], [3.0, -2.0, 0.0])
    assert m["mae"] == pytest.approx((1.5 + 1.2 + 1.0) / 3)
    assert m["acc7"] == pytest.approx(100 / 3)  # round(clip): 3, -3, 1 against 3, -2, 0
    assert m["mae"] != sentiment_metrics([3.0, -3.0, 1.0], [3.0, -2.0, 0.0])["mae"]
