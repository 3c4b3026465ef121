"""Chapter 03's verdict (Fig. 2): the class purity of each layer's top 9, decided beyond its
standard error, on hand-made top-9 tables whose purities are known."""
import numpy as np
import torch

from zfcore.findings import DOES_NOT_HOLD, HOLDS, NOT_TESTABLE
from zfcore.mining import TopK, class_purity
from zfcore.top9 import findings, purity_rows, purity_text

# 9 classes of 9 images each: image i is of class i // 9
LABELS = np.repeat(np.arange(9), 9)


def _layer(name, same_counts):
    """A layer whose map c's top 9 holds ``same_counts[c]`` images of class 0 and the rest one of
    each other class: purity max(count, 1) / 9."""
    images = []
    for c, n in enumerate(same_counts):
        idx = [j for j in range(n)] + [9 * (1 + j) + c % 9 for j in range(9 - n)]
        images.append(idx)
    images = torch.tensor(images)
    k = images.shape[1]
    return TopK(name, torch.zeros(len(same_counts), k), images, torch.zeros(len(same_counts), k, 2, dtype=torch.long))


def _top9(*layers):
    return {f"conv{i + 1}": _layer(f"conv{i + 1}", counts) for i, counts in enumerate(layers)}


def test_purities_are_what_the_tables_hold():
    t = _top9([2, 3, 4, 5])
    assert np.allclose(class_purity(t["conv1"], LABELS), [2 / 9, 3 / 9, 4 / 9, 5 / 9])
    (row,) = purity_rows(t, LABELS)
    # mean 3.5 / 9, SE over 4 maps std([2, 3, 4, 5]) / 9 / 2
    assert row[:3] == ("conv1", 4, f"{3.5 / 9:.2f} ± {np.std([2, 3, 4, 5], ddof=1) / 9 / 2:.2f}")


def test_a_clear_rise_holds_a_rise_within_its_se_is_not_testable_a_fall_does_not_hold():
    low, high = [2, 3, 2, 3] * 4, [7, 8, 7, 8] * 4
    assert findings(_top9(low, [4, 5, 4, 5] * 4, high), LABELS, 0.2)[0].verdict == HOLDS
    # the old rule (never down by more than 0.02, last above first) counted this rise as holding:
    # purity 0.50 -> 0.52 with maps spread from 1/9 to 8/9 (SE about 0.09 each)
    wide = [1, 8, 1, 8, 2, 7] * 3
    wider = [1, 8, 2, 8, 2, 7] * 3
    f = findings(_top9(wide, wider), LABELS, 0.2)[0]
    assert f.verdict == NOT_TESTABLE and "last minus first" in f.evidence
    assert "too little" in purity_text(f)
    # a rise from first to last, but a step that falls beyond 2 SE on the way
    f = findings(_top9(low, high, low, high), LABELS, 0.2)[0]
    assert f.verdict == DOES_NOT_HOLD and purity_text(f).startswith("On this run the top-9 purity does not rise")
    # and a fall from first to last
    assert findings(_top9(high, low), LABELS, 0.2)[0].verdict == DOES_NOT_HOLD
