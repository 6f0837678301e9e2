"""The device check: what a person with a GPU runs before (and instead of guessing about) a paper-scale run.

    bash experiments/device_check.sh                      # on the GPU machine; writes docs/results/gpu.{json,md}
    python -m experiments.device_check --allow-cpu --tiny       # the format, on a CPU: runs/dry_run/gpu.{json,md}

Each piece runs in its own process under its own time limit (``--limit-s``, at most 10 minutes), so one that
hangs or runs long is recorded as ``timeout`` and the others still run:

- ``accelerator``: ``jax.devices()`` is a GPU or TPU, and a CNN training step (the conv path) compiles for it
  and leaves its results there, with the convolutions lowered to the accelerator's kernels (no CPU fallback).
- ``step_overhead``: one jitted training step of NG-GNN and NG-T on the papers' CNN-32 and CNN-128 (batch 128),
  as ratios to Adam's step (``experiments/benchmarks/step_overhead.py``).
- ``meta_throughput``: one BPTT outer step (tasks x unroll) against the same number of plain Adam steps
  (``experiments/benchmarks/meta_throughput.py``).
- ``scalegmn``: ScaleGMN's single-shot ``finetune`` of one CNN against one Adam step on it.
- ``paper_slice``: ``replicate.py --scale paper`` cut short (NG-GNN, a few outer steps, tuned Adam, 2 seeds) on
  the prepared FashionMNIST and CIFAR10 (``l2o-jax data prepare fashion_mnist cifar10``); with ``--tiny``, its
  ``--dry-run`` on ``tfds.testing.mock_data``.

The JSON has ``kind: "gpu"``; ``experiments/report.py`` renders it into the page beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

PIECES = ("accelerator", "step_overhead", "meta_throughput", "scalegmn", "paper_slice")
ACCELERATORS = ("gpu", "tpu")
MAX_LIMIT_S = 600

#: Sizes per mode: the measurement on a device, and a seconds-long stand-in that checks the format on a CPU.
SIZES = {
    "full": dict(
        widths=(32, 128),
        batch=128,
        repeats=20,
        step_optimizers=("adam", "graph_l2o (NG-GNN 32x4)", "transformer_l2o (NG-T 32x2)"),
        meta_tasks=8,
        meta_length=100,
        meta_width=32,
        scalegmn_width=16,
        slice_args=(
            "--outer-steps 20 --checkpoint-every 10 --eval-steps 200 --eval-every 50 --seeds 2 "
            "--learning-rates 1e-3 3e-3 --weight-decays 0"
        ),
    ),
    "tiny": dict(
        widths=(4, 8),
        batch=8,
        repeats=2,
        step_optimizers=("adam", "graph_l2o (NG-GNN 32x4)"),
        meta_tasks=2,
        meta_length=3,
        meta_width=4,
        scalegmn_width=4,
        slice_args="--dry-run",
    ),
}


def _accelerator(sizes: dict, allow_cpu: bool) -> dict:
    import jax
    import optax

    from l2o_jax.graphs import conv_implementation
    from l2o_jax.tasks import CNNClassifier

    device = jax.devices()[0]
    model = CNNClassifier(width=8, depth=3, num_classes=10)
    x = jax.random.normal(jax.random.key(0), (sizes["batch"], 28, 28, 1))
    y = jax.random.randint(jax.random.key(1), (sizes["batch"],), 0, 10)
    params = model.init(jax.random.key(2), x[:1])
    tx = optax.adam(1e-3)

    def step(params, state):
        loss_fn = lambda p: optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    compiled = jax.jit(step).lower(params, tx.init(params)).compile()
    hlo = compiled.as_text()
    _, _, loss = compiled(params, tx.init(params))
    on = sorted({d.platform for d in loss.devices()})
    # cuDNN convolutions are custom calls on GPUs; TPUs keep XLA's convolution op.
    conv_kernels = "cudnn" if "cudnn" in hlo else "xla convolution" if "convolution(" in hlo else "none found"
    is_accelerator = device.platform in ACCELERATORS
    ok = is_accelerator and on == [device.platform] and conv_kernels != "none found"
    return {
        "platform": device.platform,
        "device_kind": getattr(device, "device_kind", ""),
        "devices": len(jax.devices()),
        "jax": jax.__version__,
        "conv_step_ran_on": on,
        "conv_implementation": conv_implementation().__name__,
        "conv_kernels": conv_kernels,
        "loss": float(loss),
        "ok": ok,
        "skipped": not is_accelerator and allow_cpu,
    }


def _step_overhead(sizes: dict) -> dict:
    import step_overhead

    rows = []
    for width in sizes["widths"]:
        seconds, ratios = step_overhead.measure(width, sizes["step_optimizers"], sizes["repeats"], batch=sizes["batch"])
        rows += [
            {"optimizee": f"CNN-{width}", "optimizer": name, "ms_per_step": 1e3 * t, "vs_adam": ratios[name]}
            for name, t in seconds.items()
        ]
    return {"batch": sizes["batch"], "rows": rows}


def _meta_throughput(sizes: dict) -> dict:
    import jax
    import meta_throughput
    from timing import time_interleaved

    import l2o_jax
    from l2o_jax.meta import FullUnrollBPTT
    from l2o_jax.tasks import image_task

    n, length = sizes["meta_tasks"], sizes["meta_length"]
    task = jax.device_put(image_task("digits", width=sizes["meta_width"], depth=2, batch_size=64))
    meta = l2o_jax.GraphL2O(hidden=16, layers=2).init(jax.random.key(0))
    estimator = FullUnrollBPTT(lengths=(length,), num_tasks=n)
    outer = lambda m, k: estimator.estimate(m, task, (), k, length=length)[:2]
    key = jax.random.key(1)
    calls = {"adam": (meta_throughput.adam_steps(task, n, length), (key,)), "outer": (outer, (meta, key))}
    seconds, ratios, compile_s = time_interleaved(calls, sizes["repeats"])  # as the benchmark measures it
    return {
        "task": task.name,
        "tasks": n,
        "length": length,
        "outer_step_s": seconds["outer"],
        "adam_steps_s": seconds["adam"],
        "vs_adam": ratios["outer"],
        "inner_steps_per_s": n * length / seconds["outer"],
        "compile_s": compile_s["outer"],
    }


def _scalegmn(sizes: dict) -> dict:
    import jax
    import optax
    from timing import time_compiled

    from l2o_jax import amortized
    from l2o_jax.tasks import CNNClassifier

    model = CNNClassifier(width=sizes["scalegmn_width"], depth=3, num_classes=10)
    x = jax.random.normal(jax.random.key(1), (sizes["batch"], 32, 32, 1))
    y = jax.random.randint(jax.random.key(2), (sizes["batch"],), 0, 10)
    params = model.init(jax.random.key(0), x[:1])
    meta = amortized.ScaleGMN(activation="relu", hidden=32, layers=2).init(jax.random.key(3), params)
    finetune_s, _ = time_compiled(amortized.finetune, meta, params, repeats=sizes["repeats"])
    tx = optax.adam(1e-3)

    def adam_step(params, state):
        grads = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean())(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    adam_s, _ = time_compiled(adam_step, params, tx.init(params), repeats=sizes["repeats"])
    return {
        "network": f"CNN-{sizes['scalegmn_width']} (relu, 32x32x1, batch {sizes['batch']} for Adam)",
        "finetune_ms": 1e3 * finetune_s,
        "adam_step_ms": 1e3 * adam_s,
        "vs_adam_step": finetune_s / adam_s,
    }


def _paper_slice(sizes: dict, data_dir: str | None, mock_data: bool) -> dict:
    import replicate

    argv = ["--scale", "paper", "--optimizers", "NG-GNN", "--baselines", "adam", "--no-progress"]
    argv += sizes["slice_args"].split() + (["--data-dir", data_dir] if data_dir else [])
    with tempfile.TemporaryDirectory() as workdir, _mocked(mock_data):
        summary = replicate.main([*argv, "--workdir", workdir])
    keep = ("name", "final_accuracy", "final_accuracy_std", "final_loss", "finite")
    return {
        "command": summary["command"],
        "mock_data": mock_data,
        "eval_task": summary["eval_task"],
        "eval_input_shape": summary.get("eval_input_shape"),
        "results": [{k: r.get(k) for k in keep} for r in summary["results"]],
        "meta_training_s": summary["learned"]["NG-GNN"].get("seconds"),
        "seconds": summary["seconds"],
    }


def _mocked(enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    import tensorflow_datasets as tfds

    return tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE)


def run_piece(name: str, args: argparse.Namespace) -> dict:
    """One piece, in this process. Returns its result (raises if it fails)."""
    sizes = SIZES["tiny" if args.tiny else "full"]
    benchmarks = os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchmarks")
    if benchmarks not in sys.path:
        sys.path.insert(0, benchmarks)
    if name == "accelerator":
        return _accelerator(sizes, args.allow_cpu)
    if name == "step_overhead":
        return _step_overhead(sizes)
    if name == "meta_throughput":
        return _meta_throughput(sizes)
    if name == "scalegmn":
        return _scalegmn(sizes)
    if name == "paper_slice":
        return _paper_slice(sizes, args.data_dir, args.tiny)
    raise ValueError(f"unknown piece {name!r}; pieces: {PIECES}.")


def run_isolated(name: str, args: argparse.Namespace, limit_s: float) -> dict:
    """Runs one piece in a child process under ``limit_s`` seconds: ``{"status", "seconds", "limit_s", ...}``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "piece.json")
        command = [sys.executable, "-m", "experiments.device_check", "--piece", name, "--piece-out", out]
        command += ["--allow-cpu"] * args.allow_cpu + ["--tiny"] * args.tiny
        command += ["--data-dir", args.data_dir] if args.data_dir else []
        started = time.perf_counter()
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        try:
            done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=limit_s)
        except subprocess.TimeoutExpired:
            return {"status": "timeout", "seconds": round(time.perf_counter() - started, 1), "limit_s": limit_s}
        record = {"seconds": round(time.perf_counter() - started, 1), "limit_s": limit_s}
        if done.returncode != 0 or not os.path.exists(out):
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            return {**record, "status": "error", "error": lines[-1] if lines else f"exit code {done.returncode}"}
        with open(out) as f:
            return {**record, "status": "ok", "result": json.load(f)}


def check(args: argparse.Namespace) -> dict:
    """Every piece of ``args.pieces`` under its limit; the JSON data of the ``gpu`` result."""
    from experiments import report

    started = time.perf_counter()
    pieces = {}
    for name in args.pieces:
        print(f"device check: {name} (limit {args.limit_s:.0f} s)", file=sys.stderr, flush=True)
        pieces[name] = run_isolated(name, args, args.limit_s)
        print(f"  {pieces[name]['status']} in {pieces[name]['seconds']} s", file=sys.stderr, flush=True)
    accelerator = pieces.get("accelerator", {}).get("result", {})
    return {
        "kind": "gpu",
        "title": f"Device check: {accelerator.get('device_kind') or accelerator.get('platform') or 'unknown device'}",
        "mode": "tiny" if args.tiny else "full",
        "accelerator_required": not args.allow_cpu,
        "pieces": pieces,
        "provenance": report.provenance(started),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="the result's JSON, its page beside it (docs/results/gpu.json; --tiny: runs/)")
    parser.add_argument("--allow-cpu", action="store_true", help="do not fail without a GPU/TPU (format checks)")
    parser.add_argument("--tiny", action="store_true", help="seconds-long sizes and mock tfds data (format checks)")
    parser.add_argument("--pieces", nargs="+", choices=PIECES, default=list(PIECES))
    parser.add_argument("--limit-s", type=float, default=MAX_LIMIT_S, help=f"per piece, at most {MAX_LIMIT_S}")
    parser.add_argument("--data-dir", default=None, help="tfds data directory with fashion_mnist and cifar10")
    parser.add_argument("--piece", choices=PIECES, help=argparse.SUPPRESS)
    parser.add_argument("--piece-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.piece:
        with open(args.piece_out, "w") as f:
            json.dump(run_piece(args.piece, args), f)
        return 0
    args.limit_s = min(args.limit_s, MAX_LIMIT_S)
    args.out = args.out or ("runs/dry_run/gpu.json" if args.tiny else "docs/results/gpu.json")
    from experiments import report

    data = check(args)
    page = report.save(data, args.out)
    print(open(page).read())
    accelerator = data["pieces"].get("accelerator", {})
    if not args.allow_cpu and not accelerator.get("result", {}).get("ok"):
        print("device check: no accelerator in use (see the accelerator piece above)", file=sys.stderr)
        return 1
    return 0 if all(p["status"] == "ok" for p in data["pieces"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
