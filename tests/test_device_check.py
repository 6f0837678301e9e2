"""experiments/device_check.py on a CPU: the JSON and page it writes, the accelerator check failing without a GPU,
and a piece that runs past its limit recorded as such."""

import argparse
import importlib
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def modules(monkeypatch):
    monkeypatch.syspath_prepend(ROOT)
    return importlib.import_module("experiments.device_check"), importlib.import_module("experiments.report")


def test_tiny_run_on_cpu_writes_the_gpu_result_and_fails_the_accelerator_check(modules, tmp_path):
    device_check, _ = modules
    out = tmp_path / "gpu.json"
    code = device_check.main(["--tiny", "--out", str(out), "--pieces", "accelerator", "scalegmn"])

    assert code == 1  # no GPU here, and --allow-cpu was not given
    data = json.loads(out.read_text())
    assert data["kind"] == "gpu" and data["mode"] == "tiny" and data["accelerator_required"]
    accelerator = data["pieces"]["accelerator"]
    assert accelerator["status"] == "ok" and accelerator["limit_s"] == device_check.MAX_LIMIT_S
    assert accelerator["result"]["platform"] == "cpu" and accelerator["result"]["conv_step_ran_on"] == ["cpu"]
    assert not accelerator["result"]["ok"] and not accelerator["result"]["skipped"]
    gmn = data["pieces"]["scalegmn"]["result"]
    assert gmn["finetune_ms"] > 0 and gmn["adam_step_ms"] > 0 and gmn["vs_adam_step"] > 0
    page = (tmp_path / "gpu.md").read_text()
    assert page.startswith("# Device check: cpu") and "Accelerator in use: **no**" in page
    assert "## ScaleGMN single shot" in page and "## Provenance" in page


def test_a_piece_past_its_limit_is_recorded_and_the_others_still_run(modules):
    device_check, _ = modules
    args = argparse.Namespace(allow_cpu=True, tiny=True, data_dir=None)
    record = device_check.run_isolated("accelerator", args, limit_s=0.2)
    assert record["status"] == "timeout" and record["limit_s"] == 0.2 and "result" not in record


def test_the_page_shows_every_piece(modules):
    _, report = modules
    row = lambda name, result, status="ok": {"status": status, "seconds": 1.0, "limit_s": 600, "result": result}
    data = {
        "kind": "gpu",
        "title": "Device check: NVIDIA H100",
        "mode": "full",
        "accelerator_required": True,
        "pieces": {
            "accelerator": row(
                "accelerator",
                {
                    "platform": "gpu",
                    "device_kind": "NVIDIA H100",
                    "devices": 1,
                    "jax": "0.10",
                    "conv_step_ran_on": ["gpu"],
                    "conv_implementation": "conv_general_dilated",
                    "conv_kernels": "cudnn",
                    "ok": True,
                    "skipped": False,
                },
            ),
            "step_overhead": row(
                "step_overhead",
                {
                    "batch": 128,
                    "rows": [
                        {"optimizee": "CNN-32", "optimizer": "adam", "ms_per_step": 1.0, "vs_adam": 1.0},
                        {"optimizee": "CNN-32", "optimizer": "NG-GNN", "ms_per_step": 2.5, "vs_adam": 2.5},
                    ],
                },
            ),
            "meta_throughput": {"status": "timeout", "seconds": 600.0, "limit_s": 600},
            "scalegmn": {"status": "error", "seconds": 3.0, "limit_s": 600, "error": "RuntimeError: out of memory"},
            "paper_slice": row(
                "paper_slice",
                {
                    "command": "python experiments/replicate.py --scale paper",
                    "mock_data": False,
                    "eval_task": "cifar10/cnn-w64-d3-k3-relu",
                    "eval_input_shape": [32, 32, 3],
                    "results": [
                        {"name": "NG-GNN", "final_accuracy": 0.41, "final_accuracy_std": 0.01, "final_loss": 1.6}
                    ],
                    "meta_training_s": 100.0,
                    "seconds": 300.0,
                },
            ),
        },
        "provenance": {"command": "bash experiments/device_check.sh", "seconds": 900.0},
    }
    page = report.render(data)
    assert "Accelerator in use: yes" in page and "cudnn" in page
    assert "| CNN-32 | NG-GNN | 2.50 | 2.50x |" in page
    assert "| meta_throughput | timeout | 600.0 (600) |" in page and "RuntimeError: out of memory" in page
    assert "| NG-GNN | 41.00 ± 1.00 | 1.6000 |" in page and "mock" not in page
    assert "## Meta-training throughput" not in page  # no result, no section
