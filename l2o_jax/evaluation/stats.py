"""Claims with uncertainty: a bootstrap interval of a learned optimizer's advantage over a baseline, and speedups.

A learned optimizer's result varies with its meta-training run and with the evaluation seed, so a comparison
resamples both: meta-runs, and evaluation seeds shared by the learned optimizer and the baseline (the same seed
gives both the same initialisation and batches, so the differences are paired by seed).
"""

from __future__ import annotations

import dataclasses

import numpy as np

VERDICTS = ("beats", "loses to", "ties")


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A learned optimizer against a baseline on one metric.

    Attributes:
      mean_difference: mean over meta-runs and seeds of learned minus baseline.
      low, high: the bootstrap confidence interval of that mean.
      confidence: the interval's level.
      verdict: ``'beats'`` or ``'loses to'`` when the interval excludes zero (in the direction that is better
        for the metric), else ``'ties'``.
      higher_is_better: True for accuracy, False for a loss.
    """

    mean_difference: float
    low: float
    high: float
    confidence: float
    verdict: str
    higher_is_better: bool

    def describe(self, scale: float = 1.0, digits: int = 2) -> str:
        """e.g. ``'beats (+1.20, 95 % CI +0.40 to +2.00)'``; ``scale=100`` shows fractions as points."""
        m, lo, hi = (scale * v for v in (self.mean_difference, self.low, self.high))
        return f"{self.verdict} ({m:+.{digits}f}, {100 * self.confidence:g} % CI {lo:+.{digits}f} to {hi:+.{digits}f})"


def compare(
    learned,
    baseline,
    *,
    higher_is_better: bool = True,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """Bootstrap over meta-runs x evaluation seeds of the mean difference ``learned - baseline``.

    Each resample draws meta-runs and evaluation seeds with replacement, independently, and averages the paired
    differences ``learned[run, seed] - baseline[seed]``; the interval is the resamples' percentile interval. A
    non-finite value (a diverged run) counts as the worst possible outcome. A baseline with meta-runs of its own
    (another learned optimizer) has them drawn independently too: ``learned[run, seed] - baseline[run', seed]``.

    Args:
      learned: ``[meta_runs, eval_seeds]`` or ``[eval_seeds]`` values of a metric.
      baseline: ``[eval_seeds]`` (or ``[baseline_meta_runs, eval_seeds]``) values of the same metric on the same
        seeds.
      higher_is_better: True for accuracy, False for a loss.
      confidence: the interval's level.
      resamples: bootstrap resamples.
      seed: the resampling's seed (the result is a pure function of the inputs and it).

    Returns:
      ``Comparison``.

    Example:
      >>> result = compare(learned_accuracy, adam_accuracy)   # shapes [3, 5] and [5]
      >>> result.verdict, result.low, result.high
      ('beats', 0.004, 0.021)
    """
    learned = np.asarray(learned, np.float64)
    baseline = np.asarray(baseline, np.float64)
    learned = learned[None] if learned.ndim == 1 else learned
    baseline = baseline[None] if baseline.ndim == 1 else baseline
    if learned.ndim != 2 or baseline.ndim != 2 or learned.shape[1] != baseline.shape[1]:
        raise ValueError(
            f"compare needs learned [meta_runs, eval_seeds] (or [eval_seeds]) and baseline [eval_seeds] (or "
            f"[meta_runs, eval_seeds]) on the same seeds; got shapes {learned.shape} and {baseline.shape}."
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    worst = -np.inf if higher_is_better else np.inf
    with np.errstate(invalid="ignore"):
        finite = lambda x: np.where(np.isfinite(x), x, worst)
        difference = finite(learned)[:, None] - finite(baseline)[None]  # [runs, baseline runs, seeds]
    difference = np.nan_to_num(difference, nan=0.0)  # both diverged: no difference
    runs, baseline_runs, seeds = difference.shape
    rng = np.random.default_rng(seed)
    run_index = rng.integers(0, runs, (resamples, runs, 1, 1))
    seed_index = rng.integers(0, seeds, (resamples, 1, 1, seeds))
    baseline_index = rng.integers(0, baseline_runs, (resamples, 1, baseline_runs, 1)) if baseline_runs > 1 else 0
    tail = (1 - confidence) / 2
    with np.errstate(over="ignore", invalid="ignore"):  # infinite differences of diverged runs
        means = difference[run_index, baseline_index, seed_index].mean(axis=(1, 2, 3))
        low, high = np.quantile(means, [tail, 1 - tail], method="inverted_cdf")  # no interpolation between infs
        mean = difference.mean()
    better, worse = ("beats", "loses to") if higher_is_better else ("loses to", "beats")
    verdict = better if low > 0 else worse if high < 0 else "ties"
    return Comparison(float(mean), float(low), float(high), confidence, verdict, higher_is_better)


@dataclasses.dataclass(frozen=True)
class Speedup:
    """How much sooner a learned optimizer reaches a baseline's value.

    Attributes:
      step: the first recorded step at which the learned curve reaches the target, or None if it never does.
      ratio: ``at_step / step`` (> 1: faster than the baseline), or None.
    """

    step: int | None
    ratio: float | None


def speedup(steps, learned, target: float, *, at_step: int, higher_is_better: bool = False) -> Speedup:
    """The first step at which the learned optimizer reaches the baseline's value at ``at_step``, and the ratio.

    Args:
      steps: ``[evals]`` the steps at which ``learned`` was recorded.
      learned: ``[..., evals]`` the learned optimizer's curve; leading axes (meta-runs, seeds) are averaged.
      target: the baseline's value (mean over seeds) at ``at_step``.
      at_step: the step of ``target``.
      higher_is_better: False for a loss, True for accuracy.

    Returns:
      ``Speedup``; ``Speedup(None, None)`` when the curve never reaches ``target``.

    Example:
      >>> adam = evaluate(...); gnn = evaluate(...)
      >>> speedup(gnn.eval_steps, gnn.eval_loss, adam.eval_loss[:, -1].mean(), at_step=adam.eval_steps[-1])
      Speedup(step=40, ratio=2.5)
    """
    steps = np.asarray(steps)
    curve = np.asarray(learned, np.float64)
    curve = curve.reshape(-1, curve.shape[-1]).mean(0)
    if curve.shape != steps.shape:
        raise ValueError(f"speedup needs one value per step: curve {curve.shape}, steps {steps.shape}.")
    reached = curve >= target if higher_is_better else curve <= target
    if not reached.any():
        return Speedup(None, None)
    step = int(steps[np.argmax(reached)])
    return Speedup(step, float(at_step / step) if step > 0 else float("inf"))
