"""Figures of evaluation results as PNG files.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so saving one never changes the
user's matplotlib backend (a notebook keeps showing its inline plots).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np


def _figure(figsize: tuple[float, float]):
    """A standalone figure and its axes, outside pyplot's global state."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _save(fig, ax, title: str, path) -> str:
    """Titles, grids and legends the axes, writes the figure to ``path`` (PNG) and returns the path."""
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return os.fspath(path)


def plot_curves(
    results: Sequence,
    path: str | os.PathLike,
    *,
    metric: str = "accuracy",
    title: str = "",
    log_steps: bool = False,
    horizon: int | None = None,
) -> str:
    """Evaluation accuracy (or loss) vs step, mean ± std over seeds, one line per optimizer.

    Args:
      log_steps: a logarithmic step axis (step 0 left out), so that early and late training both show.
      horizon: marks the learned optimizer's meta-training unroll (or truncation) length with a dotted line:
        what lies right of it is past what the optimizer was trained on.

    Example:
      >>> plot_curves([gnn_result, adam_result], 'runs/x/accuracy.png', title='digits CNN-32', log_steps=True)
    """
    fig, ax = _figure((6.4, 4))
    for r in results:
        values = (r.eval_accuracy * 100) if metric == "accuracy" else r.eval_loss
        shown = r.eval_steps > 0 if log_steps else slice(None)
        mean, std = values.mean(0)[shown], values.std(0)[shown]
        ax.plot(r.eval_steps[shown], mean, label=r.name)
        ax.fill_between(r.eval_steps[shown], mean - std, mean + std, alpha=0.2)
    if log_steps:
        ax.set_xscale("log")
    if horizon is not None:
        ax.axvline(horizon, color="gray", linestyle=":", label="meta-training horizon")
    ax.set_xlabel("step")
    ax.set_ylabel(f"{results[0].split} accuracy (%)" if metric == "accuracy" else f"{results[0].split} loss")
    return _save(fig, ax, title, path)


def plot_advantage(
    xs: Sequence,
    advantages: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    *,
    xlabel: str,
    reference: float | None = None,
    title: str = "",
) -> str:
    """Advantage over a baseline (mean ± std) against a sweep variable (width, depth), one line per optimizer.

    Args:
      xs: the sweep values.
      advantages: ``{name: (means, stds)}`` in percentage points.
      reference: x of the meta-training setting, drawn as a dashed line.

    Example:
      >>> plot_advantage([16, 32, 64], {'GNN': ([1, 2, 3], [0.5, 0.5, 0.5])}, 'adv.png', xlabel='width')
    """
    fig, ax = _figure((6.4, 4))
    for name, (mean, std) in advantages.items():
        mean, std = np.asarray(mean), np.asarray(std)
        ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=name)
    ax.axhline(0.0, color="black", lw=0.8)
    if reference is not None:
        ax.axvline(reference, color="gray", ls="--", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy advantage over Adam (pp)")
    return _save(fig, ax, title, path)
