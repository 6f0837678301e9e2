"""Every page under ``docs/results/`` from the JSON file beside it, and README's results table.

    python -m experiments.report            # rewrites docs/results/*.md and README's results block
    python -m experiments.report --check    # exits 1, naming the files, if any of them is stale

An experiment writes one JSON file per page: ``{"kind": ..., "title": ..., "provenance": provenance(...), ...}``.
The page is ``RENDERERS[kind](data)`` between the title and the provenance, so a page says nothing its data does
not hold. Adding a kind is one module in ``experiments/pages/`` (see that package's docstring).

Hand-written reading of a run goes in the JSON's ``notes`` (markdown paragraphs), shown under a heading that
says so. ``docs/results/retired/`` holds pages that predate this protocol; they are not rendered.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python experiments/x.py` puts experiments/ on the path, not the repository root
    sys.path.insert(0, ROOT)

from experiments.pages import RENDERERS  # noqa: E402, F401  (re-exported)
from experiments.pages import renderer  # noqa: E402, F401  (re-exported)
from experiments.pages import slug  # noqa: E402, F401  (re-exported)
from experiments.pages.pretrained import pretrained_doc  # noqa: E402
from l2o_jax import io  # noqa: E402

RESULTS = os.path.join(ROOT, "docs", "results")
README = os.path.join(ROOT, "README.md")
PRETRAINED_DOC = os.path.join(ROOT, "docs", "pretrained.md")  # the shipped entries, from their records
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def provenance(
    started: float | None = None,
    *,
    command: str | None = None,
    workdir: str | None = None,
    stage_seconds: float | None = None,
) -> dict:
    """What a result's JSON records about how it was made: the exact command, the code version, the machine, the
    wall time since ``started`` (a ``time.perf_counter()`` value) and, with ``workdir``, the compute time of every
    cached stage there (``l2o_jax.io.stage_seconds``: what the result cost when this run resumed earlier ones), or
    ``stage_seconds`` when given (a study sharing its workdir: ``l2o_jax.study.study_stage_seconds``).

    Example:
      >>> started = time.perf_counter()
      >>> ...  # the experiment
      >>> data = {"kind": "li_malik", "title": ..., "provenance": provenance(started), ...}
    """
    import jax

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    argv = getattr(sys, "orig_argv", sys.argv)
    changed = git("diff", "--name-only", "HEAD")  # tracked files that differ from the commit
    return {
        "command": command or shlex.join(["python", *argv[1:]]),
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": None if changed is None else changed.splitlines(),  # older results hold a bool
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
        },
        "seconds": None if started is None else round(time.perf_counter() - started, 1),
        "stage_seconds": stage_seconds if stage_seconds is not None or workdir is None else io.stage_seconds(workdir),
        "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def save(data: dict, path: str) -> str:
    """Writes a result's JSON and its page (the same path with ``.md``); returns the page's path.

    Example:
      >>> save({"kind": "li_malik", "title": "...", "provenance": provenance(started), ...}, "docs/results/x.json")
    """
    if data.get("kind") not in RENDERERS:
        raise ValueError(f"unknown result kind {data.get('kind')!r}; known: {sorted(RENDERERS)}.")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    page = os.path.splitext(path)[0] + ".md"
    with open(page, "w") as f:
        f.write(render(data))
    return page


def render(data: dict) -> str:
    """The markdown page of one result."""
    kind = data.get("kind")
    if kind not in RENDERERS:
        raise ValueError(f"unknown result kind {kind!r}; known: {sorted(RENDERERS)}.")
    parts = [f"# {data['title']}", RENDERERS[kind](data).strip()]
    if data.get("notes"):
        parts += ["_Written by hand after the run (the sections above are generated from the data):_", *data["notes"]]
    parts.append(provenance_section(data.get("provenance") or {}))
    return "\n\n".join(p.strip() for p in parts) + "\n"


def provenance_section(p: dict) -> str:
    """Markdown: how the result was made, with what was not recorded said so."""
    missing = "not recorded"
    machine = p.get("machine")
    if machine:
        machine = (
            f"{machine['platform']}, {machine['cpu_count']} CPUs, Python {machine['python']}, jax {machine['jax']}, "
            f"devices {', '.join(machine['devices'])}"
        )
    commit = p.get("commit")
    if commit:
        changed = p.get("uncommitted_changes")
        where = f" to {', '.join(changed)}" if isinstance(changed, list) else ""
        commit = f"`{commit[:12]}`" + (f" with uncommitted changes{where}" if changed else "")
    seconds = p.get("seconds")
    lines = [
        "## Provenance",
        "",
        f"- Command: `{p['command']}`" if p.get("command") else f"- Command: {missing}",
        f"- Code: {commit or missing}",
        f"- Machine: {machine or missing}",
        f"- Wall time: {f'{seconds:.0f} s' if seconds is not None else missing}",
    ]
    if p.get("stage_seconds"):
        lines.append(
            f"- Compute time of its cached stages, over every run that resumed them: {p['stage_seconds']:.0f} s"
        )
    if p.get("finished"):
        lines.append(f"- Finished: {p['finished']}")
    if p.get("note"):
        lines.append(f"- Note: {p['note']}")
    return "\n".join(lines)


def load_results(directory: str = RESULTS) -> dict[str, dict]:
    """Every result JSON directly under ``directory`` (not ``retired/``), by file name."""
    results = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict) or data.get("kind") not in RENDERERS:
            kind = data.get("kind") if isinstance(data, dict) else None
            raise ValueError(f"{path}: not a result file (kind {kind!r}; known kinds: {sorted(RENDERERS)}).")
        results[os.path.basename(path)] = data
    return results


def readme_table(results: dict[str, dict]) -> str:
    """Markdown: one row per result page, for README's results block."""
    rows = [
        "Every page below is written from the JSON file beside it by `python -m experiments.report`.",
        "",
        "| result | page | command | wall time (cached stages' compute time) |",
        "|---|---|---|---|",
    ]
    for name, data in results.items():
        page = os.path.splitext(name)[0] + ".md"
        p = data.get("provenance") or {}
        seconds = f"{p['seconds']:.0f} s" if p.get("seconds") is not None else "not recorded"
        if p.get("stage_seconds"):
            seconds += f" ({p['stage_seconds']:.0f} s)"
        command = f"`{p['command']}`" if p.get("command") else "not recorded"
        rows.append(f"| {data['title']} | [{page}](docs/results/{page}) | {command} | {seconds} |")
    return "\n".join(rows)


def with_readme_table(readme: str, table: str) -> str:
    """``readme`` with the text between the results markers replaced by ``table``."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(END):
        raise ValueError(f"README.md needs exactly one {BEGIN} ... {END} block for the results table.")
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def outputs(directory: str = RESULTS, readme: str = README) -> dict[str, str]:
    """Every file the report writes, by path, with its text: computed in memory, nothing is touched."""
    results = load_results(directory)
    files = {os.path.join(directory, os.path.splitext(n)[0] + ".md"): render(d) for n, d in results.items()}
    with open(readme) as f:
        files[readme] = with_readme_table(f.read(), readme_table(results))
    if directory == RESULTS:
        files[PRETRAINED_DOC] = pretrained_doc()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any file is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = open(path).read() if os.path.exists(path) else None
        if current == text:
            continue
        stale.append(os.path.relpath(path, ROOT))
        if not args.check:
            with open(path, "w") as f:
                f.write(text)
    verb = "stale" if args.check else "rewritten"
    print(f"{verb}: {', '.join(stale)}" if stale else "every page is up to date")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
