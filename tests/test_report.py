"""The result pages and README's results table are what `python -m experiments.report` writes from the data."""

import importlib
import json
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def report(monkeypatch):
    monkeypatch.syspath_prepend(ROOT)
    return importlib.import_module("experiments.report")


def test_committed_pages_are_what_the_report_writes_from_the_committed_data(report):
    files = report.outputs()  # in memory: nothing is written
    pages = [p for p in files if p.startswith(report.RESULTS)]
    assert len(pages) == len(report.load_results()) >= 2
    assert report.PRETRAINED_DOC in files  # the shipped entries' page, from their records
    for path, text in files.items():
        assert os.path.exists(path), f"{path} is missing: run python -m experiments.report"
        assert open(path).read() == text, f"{os.path.relpath(path, ROOT)} is stale: run python -m experiments.report"


def test_every_page_has_its_data_and_every_link_resolves(report):
    for name in os.listdir(report.RESULTS):
        if name.endswith(".md"):
            assert os.path.exists(os.path.join(report.RESULTS, name[:-3] + ".json")), f"{name} has no data file"
    for path in [report.README, *(os.path.join(report.RESULTS, n) for n in os.listdir(report.RESULTS))]:
        if not path.endswith(".md"):
            continue
        for target in re.findall(r"\]\(([^)#\s]+)\)", open(path).read()):
            if not target.startswith("http"):
                assert os.path.exists(os.path.join(os.path.dirname(path), target)), f"{path} links to {target}"


def test_a_new_kind_is_one_registered_function(report, monkeypatch, tmp_path):
    monkeypatch.setitem(report.RENDERERS, "toy", lambda data: f"{len(data['values'])} values")
    data = {"kind": "toy", "title": "A toy", "values": [1, 2], "notes": ["## Reading\n\nBy hand."]}
    data["provenance"] = report.provenance(command="python toy.py")
    page = report.save(data, str(tmp_path / "toy.json"))
    text = open(page).read()
    assert text.startswith("# A toy\n\n2 values\n\n_Written by hand") and "## Reading" in text
    assert "- Command: `python toy.py`" in text and "jax " in text
    assert json.load(open(tmp_path / "toy.json")) == data
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BEGIN}\nold\n{report.END}\nrest\n")
    files = report.outputs(str(tmp_path), str(readme))
    assert files[str(tmp_path / "toy.md")] == text
    assert "| A toy | [toy.md](docs/results/toy.md) | `python toy.py` |" in files[str(readme)]
    assert files[str(readme)].endswith(f"{report.END}\nrest\n") and "old" not in files[str(readme)]
    with pytest.raises(ValueError, match="unknown result kind 'nope'"):
        report.render({"kind": "nope", "title": "x"})
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match="not a result file"):
        report.load_results(str(tmp_path))


def test_markdown_table_keeps_empty_cells_and_refuses_ragged_rows():
    from experiments.pages import markdown_table

    assert markdown_table(["a", "b"], [[1, ""], ["x", 2.5]]) == "| a | b |\n|---|---|\n| 1 | |\n| x | 2.5 |"
    with pytest.raises(ValueError, match="a row has 1 cells, the header 2"):
        markdown_table(["a", "b"], [[1]])


def test_provenance_records_command_code_machine_and_wall_time(report):
    import time

    p = report.provenance(time.perf_counter() - 2.0)
    assert p["command"].startswith("python ") and p["seconds"] >= 2.0 and p["stage_seconds"] is None
    assert set(p["machine"]) == {"platform", "cpu_count", "python", "jax", "devices"} and p["machine"]["devices"]
    assert p["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", p["commit"])
    assert p["uncommitted_changes"] is None or isinstance(p["uncommitted_changes"], list)
    dirty = {**p, "commit": "a" * 40, "uncommitted_changes": ["README.md", "l2o_jax/io.py"]}
    section = report.provenance_section(dirty)
    assert "- Code: `aaaaaaaaaaaa` with uncommitted changes to README.md, l2o_jax/io.py" in section
    clean = report.provenance_section({**dirty, "uncommitted_changes": []})
    assert "- Code: `aaaaaaaaaaaa`\n" in clean and "uncommitted" not in clean
    assert "with uncommitted changes\n" in report.provenance_section({**dirty, "uncommitted_changes": True})  # older


def test_the_horizon_page_checks_its_targets_against_the_data(report):
    with open(os.path.join(report.RESULTS, "horizon_smoke.json")) as f:
        data = json.load(f)
    render = report.RENDERERS["horizon"]
    kept = lambda page: int(re.search(r"Against adam: at least as accurate at every reported step on (\d+)", page)[1])
    fast = lambda page: int(re.search(r"Against adam: .*; 2x faster on (\d+)", page)[1])
    before = render(data)
    task = data["tasks"]["digits CNN-16"]
    for c in task["comparisons"]:
        if (c["learned"], c["baseline"]) == ("NG-GNN", "adam"):
            c["eval_accuracy"]["verdict"] = "loses to"  # as if NG-GNN lost to Adam on this task
    for s in task["speedups"]:
        if (s["learned"], s["baseline"]) == ("NG-GNN", "adam"):
            s["step"], s["ratio"] = None, None  # and never reached its loss
    after = render(data)
    was_kept = "digits CNN-16" not in re.search(r"Against adam: [^;]*", before)[0]
    assert kept(after) == kept(before) - was_kept
    assert "loses on digits CNN-16" in after and fast(after) <= fast(before)
    assert "| digits CNN-16 | adam | **loses**" in after
    del data["targets"]
    assert "## Targets" not in render(data) and "## Targets (issue 15)" in before


def test_the_quickstart_page_is_of_the_command_line_quickstart(report):
    """README links the page as what `l2o-jax quickstart` gives: a change to the preset makes it stale here."""
    from l2o_jax import study

    with open(os.path.join(report.RESULTS, "quickstart_smoke.json")) as f:
        data = json.load(f)
    preset = json.loads(json.dumps(study.protocol(study.preset("quickstart"))))
    assert data["protocol"] == preset, "docs/results/quickstart_smoke is of another study: run experiments.quickstart"
    assert [len(runs) for runs in data["selection"].values()] == [preset["meta_seeds"]] and not data["not_run"]


def test_checkpoint_scores_show_every_scored_checkpoint_with_the_pick_in_bold():
    from l2o_jax.study.report import checkpoint_scores

    selection = {
        "NG-GNN": [{"meta_seed": 3, "selected_step": 75, "validation_loss": {"0": 0.5, "75": 0.25, "150": 1.5}}],
        "NG-GNN, not meta-trained": [{"meta_seed": 0, "selected_step": 0, "validation_loss": {"0": 0.5}}],
    }
    table = checkpoint_scores(selection)
    assert "| step 0 | step 75 | step 150 |" in table and "| NG-GNN | 3 | 0.5000 | **0.2500** | 1.5000 |" in table
    assert "not meta-trained" not in table  # only its initialisation: nothing to choose from
    assert checkpoint_scores({"x": selection["NG-GNN, not meta-trained"]}) == ""
