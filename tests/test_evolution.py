"""Fig. 4's verdict (zfcore.evolution.findings): an ordering that a tie does not pass."""
from zfcore.error_rates import lr_drops
from zfcore.evolution import findings, verdict_text
from zfcore.findings import DOES_NOT_HOLD, HOLDS, NOT_TESTABLE

LAYERS = ["conv1", "conv2", "conv3"]


def _tab(settled, mid_overlap, epochs=(1, 2, 5, 10), se=0.05):
    overlap = {l: [0.0, mid_overlap[i], mid_overlap[i], 1.0][:len(epochs)] for i, l in enumerate(LAYERS)}
    return {"epochs": list(epochs), "overlap": overlap, "overlap_se": {l: [se] * len(epochs) for l in LAYERS},
            "similarity": {}, "settled": dict(zip(LAYERS, settled))}


def test_lower_layers_first_holds_only_strictly():
    assert findings(_tab([2, 5, 10], [0.8, 0.5, 0.2]))[0].verdict == HOLDS
    # every layer settles at the same epoch, before the end: a tie, not an ordering
    assert findings(_tab([5, 5, 5], [0.8, 0.5, 0.2]))[0].verdict == DOES_NOT_HOLD
    # the top layer settles first
    assert findings(_tab([10, 5, 2], [0.2, 0.5, 0.8]))[0].verdict == DOES_NOT_HOLD
    # ordered epochs, but at the middle epoch the lowest layer is less final than the top one, beyond 2 SE
    assert findings(_tab([2, 5, 10], [0.2, 0.5, 0.8]))[0].verdict == DOES_NOT_HOLD
    # ... or level with it, or ahead by less than 2 SE (the old rule, "strictly more", passed 0.55 > 0.5)
    assert findings(_tab([2, 5, 10], [0.5, 0.5, 0.5]))[0].verdict == NOT_TESTABLE
    f = findings(_tab([2, 5, 10], [0.55, 0.5, 0.5]))[0]
    assert f.verdict == NOT_TESTABLE and "+0.05 ± 0.07 (SE)" in f.evidence
    # a table without the SEs (an older cache) decides nothing on the middle epoch
    bare = _tab([2, 5, 10], [0.8, 0.5, 0.2])
    del bare["overlap_se"]
    assert findings(bare)[0].verdict == NOT_TESTABLE


def test_a_run_where_nothing_settles_before_the_end_is_not_testable():
    for settled in ([10, 10, 10], [None, None, None], [10, None, 10]):
        f = findings(_tab(settled, [0.8, 0.5, 0.2]))[0]
        assert f.verdict == NOT_TESTABLE and "too short" in f.evidence


def test_the_sentence_states_the_schedule_it_had():
    rows = [{"epoch": e, "lr": lr} for e, lr in zip(range(1, 7), [1e-2, 1e-2, 1e-3, 1e-3, 1e-3, 1e-4])]
    assert lr_drops(rows) == [3, 6]
    text = verdict_text(_tab([2, 5, 10], [0.8, 0.5, 0.2]), rows)
    assert text.startswith("**Does the paper's observation hold on this run?** Yes")
    assert "lowered at the start of epochs 3, 6" in text and "into 6" in text
    flat = [{"epoch": e, "lr": 1e-2} for e in range(1, 4)]
    assert "the learning rate was never lowered" in verdict_text(_tab([10, 10, 10], [0.8, 0.5, 0.2]), flat)
    assert "Not testable on this run" in verdict_text(_tab([10, 10, 10], [0.8, 0.5, 0.2]), flat)
