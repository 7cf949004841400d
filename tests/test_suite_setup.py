"""The test suite's own set-up: markers are declared and enforced, the quick run the README documents
leaves out every browser, network and slow module, and CI (`.ci/run`) runs everything and fails when
pytest collects nothing (exit status 5)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTEST = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
QUICK = 'python -m pytest tests -q -m "not slow" -n 2'


def _module_marks(text: str) -> set[str]:
    """The marks a module applies to all its tests (``pytestmark = ...``, one or more lines)."""
    m = re.search(r"^pytestmark\s*=\s*(\[.*?\]|[^\n]*)$", text, re.S | re.M)
    return set(re.findall(r"pytest\.mark\.(\w+)", m.group(1))) if m else set()


def test_markers_are_declared_and_strict():
    assert "--strict-markers" in PYTEST["addopts"].split()
    declared = {m.partition(":")[0] for m in PYTEST["markers"]}
    assert {"slow", "browser", "network"} <= declared
    assert "-m" not in shlex.split(PYTEST["addopts"])   # the default run is everything; the quick run is asked for


def test_the_quick_run_leaves_out_browsers_and_machine_set_ups():
    """A module driving Chromium is `browser` and `slow`; one needing docker or a network namespace is
    `network` and `slow`: the quick run (`-m "not slow"`) never starts either."""
    wrong = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        text = path.read_text()
        marks = _module_marks(text)
        # the module, or each test that starts the browser (a module of mostly fast tests)
        browser_tests = re.findall(r"((?:^@pytest\.mark\.\w+\n)*)def (test_\w+)\([^\n]*\n(?:(?!^def |^@).*\n)*?.*playwright",
                                   text, re.M)
        if re.search(r"(import|importorskip\()\W*playwright", text) and not (
                {"slow", "browser"} <= marks | set(re.findall(r"mark\.(\w+)", "".join(m for m, _ in browser_tests)))
                and (marks >= {"slow", "browser"} or browser_tests)):
            wrong.append(f"{path.name}: drives a browser, marks {sorted(marks)}")
        if re.search(r"which\(\"docker\"\)|\"netns\"", text) and not {"network", "slow"} <= marks:
            wrong.append(f"{path.name}: needs docker or a namespace, marks {sorted(marks)}")
    assert not wrong, wrong


def test_the_readme_documents_the_quick_run():
    readme = (REPO / "README.md").read_text()
    assert f"```sh\n{QUICK}\n```" in readme


def test_ci_runs_everything_and_fails_on_exit_5():
    """`.ci/run` stops at the first failing command (so pytest's 5, "no tests collected", fails the
    run) and runs the whole suite: no marker or keyword selection, no status swallowed."""
    script = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^set -[a-z]*e[a-z]*o pipefail$", script, re.M), script
    runs = [line for line in script.splitlines() if "pytest" in line and not line.lstrip().startswith("#")]
    assert len(runs) == 1, runs
    tail = runs[0].split("python -m pytest", 1)[1]
    words = shlex.split(tail)
    assert words[0] == "tests" and not {"-m", "-k", "--deselect", "--lf", "-x"} & set(words), runs[0]
    # two processes, whole modules each (addopts' --dist loadfile): ~10 minutes on CI's two cores
    assert words[words.index("-n") + 1] == "2" and "--dist loadfile" in PYTEST["addopts"], runs[0]
    assert "||" not in tail and "; true" not in tail and "&" not in tail.replace("&&", ""), runs[0]
