"""Bootstrap comparisons and speedups behind every "beats" / "loses to" the project publishes."""

import numpy as np
import pytest

from l2o_jax.evaluation import stats


def test_compare_is_deterministic_given_its_seed():
    rng = np.random.default_rng(1)
    learned, baseline = rng.normal(0.9, 0.02, (3, 5)), rng.normal(0.89, 0.02, 5)
    first = stats.compare(learned, baseline, seed=3)
    assert first == stats.compare(learned, baseline, seed=3)
    assert first.low < first.mean_difference < first.high and first.confidence == 0.95


def test_a_clear_win_beats_identical_samples_tie_and_direction_follows_the_metric():
    rng = np.random.default_rng(0)
    baseline = rng.normal(0.80, 0.01, 5)
    accuracy = stats.compare(baseline + rng.normal(0.05, 0.01, (3, 5)), baseline)
    assert (
        accuracy.verdict == "beats" and accuracy.low > 0 and accuracy.mean_difference == pytest.approx(0.05, abs=0.02)
    )
    assert stats.compare(baseline - 0.05, baseline).verdict == "loses to"
    same = stats.compare(np.stack([baseline] * 3), baseline)
    assert same.verdict == "ties" and same.low == same.high == same.mean_difference == 0.0
    loss = stats.compare(np.full((3, 5), 0.3), np.full(5, 0.5), higher_is_better=False)  # lower loss wins
    assert loss.verdict == "beats" and loss.high < 0
    assert "beats (-0.20, 95 % CI" in loss.describe()


def test_a_diverged_run_counts_as_the_worst_outcome():
    learned = np.array([[0.2, 0.2, 0.2], [np.nan, 0.2, 0.2]])
    assert stats.compare(learned, np.full(3, 0.5), higher_is_better=False).verdict == "ties"
    assert stats.compare(np.full((2, 3), np.nan), np.full(3, 0.5), higher_is_better=False).verdict == "loses to"


def test_the_interval_covers_the_true_difference_of_a_synthetic_normal_sample():
    rng = np.random.default_rng(7)
    covered = 0
    for trial in range(40):
        baseline = rng.normal(1.0, 0.1, 20)
        learned = baseline + rng.normal(0.1, 0.1, (4, 20))
        c = stats.compare(learned, baseline, resamples=2000, seed=trial)
        covered += c.low <= 0.1 <= c.high
        assert c.low < c.mean_difference < c.high
    assert covered >= 33  # nominal 95 %: 38 of 40 expected, >= 33 unless the interval is badly too narrow


def test_two_learned_optimizers_resample_both_sets_of_meta_runs():
    rng = np.random.default_rng(3)
    seeds = rng.normal(0.9, 0.01, 5)
    steady = seeds + rng.normal(0.0, 0.001, (3, 5))
    spread = seeds + np.array([[-0.04], [0.0], [0.04]])  # the other optimizer's meta-runs disagree
    assert stats.compare(steady, spread).verdict == "ties"
    assert stats.compare(steady, spread.mean(0)).high - stats.compare(steady, spread.mean(0)).low < 0.01
    assert stats.compare(steady, spread).high - stats.compare(steady, spread).low > 0.03  # their spread counts
    assert stats.compare(steady + 0.1, spread).verdict == "beats"


def test_compare_rejects_mismatched_seeds():
    with pytest.raises(ValueError, match="same seeds"):
        stats.compare(np.zeros((3, 5)), np.zeros(4))
    one_run = stats.compare(np.ones(4), np.zeros(4))  # [seeds]: a single meta-run
    assert one_run.verdict == "beats" and one_run.low == one_run.high == 1.0


def test_speedup_finds_the_first_step_that_reaches_the_baseline():
    steps = np.array([0, 10, 20, 30, 40])
    curve = np.array([[2.0, 1.0, 0.5, 0.4, 0.3], [2.0, 1.2, 0.7, 0.4, 0.3]])  # mean 2.0, 1.1, 0.6, 0.4, 0.3
    assert stats.speedup(steps, curve, 0.6, at_step=40) == stats.Speedup(20, 2.0)
    assert stats.speedup(steps, curve, 0.1, at_step=40) == stats.Speedup(None, None)
    accuracy = stats.speedup(steps, [0.1, 0.5, 0.8, 0.9, 0.95], 0.9, at_step=40, higher_is_better=True)
    assert accuracy == stats.Speedup(30, 40 / 30)
    with pytest.raises(ValueError, match="one value per step"):
        stats.speedup(steps, curve[:, :3], 0.5, at_step=40)
