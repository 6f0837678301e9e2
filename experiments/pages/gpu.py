"""The device check: accelerator use, cost ratios to Adam, a slice of the paper protocol."""

from __future__ import annotations

from experiments.pages import renderer


@renderer("gpu")
def _gpu(data: dict) -> str:
    """The device check (``experiments/device_check.py``): is the accelerator used, what the learned optimizers
    cost as ratios to Adam timed in the same run, and a short slice of the paper protocol."""
    pieces = data["pieces"]
    status = ["| piece | status | seconds (limit) |", "|---|---|---|"]
    status += [f"| {n} | {p['status']} | {p['seconds']} ({p['limit_s']:.0f}) |" for n, p in pieces.items()]
    errors = [f"- {n}: `{p['error']}`" for n, p in pieces.items() if p.get("error")]
    parts = [f"Mode `{data['mode']}`.", "\n".join(status), *(["Errors:\n" + "\n".join(errors)] if errors else [])]
    result = lambda name: pieces.get(name, {}).get("result")
    if acc := result("accelerator"):
        verdict = "skipped (CPU allowed)" if acc["skipped"] else "yes" if acc["ok"] else "**no**"
        parts.append(
            f"Accelerator in use: {verdict}. {acc['devices']} x {acc['platform']} ({acc['device_kind']}), jax "
            f"{acc['jax']}; a CNN training step ran on {', '.join(acc['conv_step_ran_on'])} with "
            f"`{acc['conv_implementation']}` convolutions (kernels found in the compiled step: {acc['conv_kernels']})."
        )
    if steps := result("step_overhead"):
        rows = ["| optimizee | optimizer | ms / step | vs Adam |", "|---|---|---|---|"]
        rows += [
            f"| {r['optimizee']} | {r['optimizer']} | {r['ms_per_step']:.2f} | {r['vs_adam']:.2f}x |"
            for r in steps["rows"]
        ]
        parts += [f"## Training step (batch {steps['batch']})", "\n".join(rows)]
    if meta := result("meta_throughput"):
        parts += [
            "## Meta-training throughput",
            f"One BPTT outer step of GraphL2O on {meta['task']}, {meta['tasks']} tasks x {meta['length']} steps: "
            f"{meta['outer_step_s']:.3f} s, {meta['vs_adam']:.2f}x the same Adam steps ({meta['adam_steps_s']:.3f} "
            f"s); {meta['inner_steps_per_s']:.0f} inner steps/s; compiled in {meta['compile_s']:.1f} s.",
        ]
    if gmn := result("scalegmn"):
        parts += [
            "## ScaleGMN single shot",
            f"{gmn['network']}: one `finetune` call {gmn['finetune_ms']:.2f} ms, {gmn['vs_adam_step']:.2f}x one "
            f"Adam step ({gmn['adam_step_ms']:.2f} ms).",
        ]
    if paper := result("paper_slice"):
        rows = ["| optimizer | final test accuracy (%) | final test loss |", "|---|---|---|"]
        rows += [
            f"| {r['name']} | {100 * r['final_accuracy']:.2f} ± {100 * (r['final_accuracy_std'] or 0):.2f} | "
            f"{r['final_loss']:.4f} |"
            for r in paper["results"]
        ]
        data_note = " (mock tfds data: pipeline check only)" if paper["mock_data"] else ""
        parts += [
            "## A slice of the paper protocol",
            f"`{paper['command']}` on {paper['eval_task']}{data_note}, {paper['seconds']:.0f} s.",
            "\n".join(rows),
        ]
    return "\n\n".join(parts)
