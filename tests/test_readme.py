"""The README's Python snippets run when pasted in order against the sample data.

Every ```python block runs, in order, in one namespace (as a user pasting them into one session),
against a server on the demo's sample files, with the README's address replaced by the test
server's. A block that cannot run here says why in a `<!-- readme: not run (reason) -->` line just
above it; a block without that marker must run. The install lines must work from a clone.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SKIP = re.compile(r"<!-- readme: not run \((.+?)\) -->\s*$")
ADDRESSES = ("grpc://127.0.0.1:8815", "grpc://localhost:8815")


def blocks() -> list[tuple[int, str, str | None]]:
    text = README.read_text()
    out = []
    for m in FENCE.finditer(text):
        line = text[: m.start()].count("\n") + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        out.append((line, m.group(1), skip.group(1) if skip else None))
    return out


def test_readme_has_snippets():
    assert len(blocks()) >= 5


@pytest.fixture
def readme_server(serve, tmp_path):
    """The sample files in a fresh directory (the snippets write workspace datasets), with the LEGEND
    levels of examples/sample_data.py (the README's LEGEND section reads them)."""
    import sys

    from arrowroot.flight_server.cli.demo import write_sample_files

    sys.path.insert(0, str(README.parent / "examples"))
    try:
        from sample_data import write_levels
    finally:
        sys.path.remove(str(README.parent / "examples"))
    return serve(write_levels(write_sample_files(tmp_path / "data")))


@pytest.mark.slow   # a server and every snippet, twice
@pytest.mark.parametrize("rounds", [2])
def test_snippets_run_in_order(readme_server, rounds):
    """Twice over, against the same server: a user re-runs a notebook, so a snippet that writes
    (an upload, a skim) must not fail the second time."""
    sample_server = readme_server
    namespace: dict = {"__name__": "readme"}
    ran = 0
    for line, code, skipped in blocks() * rounds:
        if skipped:
            assert len(skipped) > 10, f"README line {line}: say why the block is not run"
            continue
        for a in ADDRESSES:
            code = code.replace(a, sample_server.location)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                exec(compile(code, f"README.md:{line}", "exec"), namespace)
            except Exception as exc:  # noqa: BLE001 - report which block failed and why
                pytest.fail(f"README block at line {line} failed: {type(exc).__name__}: {exc}")
        ran += 1
    assert ran >= 5 * rounds


def test_install_lines_work_from_a_clone():
    text = README.read_text()
    assert 'pip install "arrowroot[' not in text and "pip install arrowroot[" not in text, \
        "arrowroot is not on PyPI: install extras from the clone, e.g. pip install -e \".[sql]\""


def test_documented_error_messages_are_the_real_ones(sample_server):
    from arrowroot.clients import InvalidRequest, NotFound

    table = README.read_text().split("### Errors", 1)[1].split("\n## ", 1)[0]
    documented = dict(re.findall(r"\| `([A-Z_]+)` \| `([^`]+)` \|", table))
    with sample_server.client() as c:
        with pytest.raises(NotFound) as err:
            c.read("hep/event.root:events")
        assert str(err.value) == documented["NOT_FOUND"]
        with pytest.raises(InvalidRequest) as err:
            c.read("hep/events.root:events", entries=(10, 5))
        assert str(err.value) == documented["INVALID_ARGUMENT"]


# ---------------------------------------------------------------- the commands the README names

COMMAND = re.compile(r"(?<![\w./-])arrowroot\s+([a-z][\w|-]*)(?:\s+([a-z][\w|-]*))?")
FLAG = re.compile(r"(?<![\w-])--[a-z][\w-]*")


def readme_commands() -> list[tuple[str, tuple[str, ...], set[str]]]:
    """(README text, command path, flags given) for every `arrowroot CMD ...` in a shell block or code span."""
    text = README.read_text()
    pieces = [m.group(1) for m in re.finditer(r"^```sh\n(.*?)^```", text, re.S | re.M)]
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    pieces += re.findall(r"`([^`\n]+)`", prose)
    out = []
    for piece in pieces:
        for line in piece.replace("\\|", "|").splitlines():   # table cells escape their pipes
            line = line.split(" # ", 1)[0]
            for m in COMMAND.finditer(line):
                if m.group(1) == "arrowroot":      # `docker compose exec arrowroot arrowroot ...`: a service name
                    continue
                rest = line[m.start():]
                segment = re.split(r";|&&|(?<=\S)\s+arrowroot\s", rest[len("arrowroot"):], maxsplit=1)[0]
                for first in m.group(1).split("|"):
                    second = tuple(m.group(2).split("|")) if m.group(2) else (None,)
                    for sub in second:
                        out.append((line.strip(), (first, sub) if sub else (first,), set(FLAG.findall(segment))))
    return out


def test_every_command_the_readme_names_exists_with_its_flags():
    from click.testing import CliRunner

    from arrowroot.flight_server.cli.main import main

    found = readme_commands()
    assert len(found) > 40
    checked = set()
    for line, path, flags in found:
        cmd = main.commands.get(path[0])
        assert cmd is not None, f"README names `arrowroot {path[0]}`, which is no command: {line}"
        words = [path[0]]
        if hasattr(cmd, "commands") and len(path) > 1:
            assert path[1] in cmd.commands, f"README: `arrowroot {' '.join(path)}` is no command: {line}"
            cmd = cmd.commands[path[1]]
            words.append(path[1])
        known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        unknown = sorted(flags - known)
        assert not unknown, f"README gives `arrowroot {' '.join(words)}` options it does not take: {unknown} ({line})"
        checked.add(tuple(words))
    runner = CliRunner()
    for words in sorted(checked):
        r = runner.invoke(main, [*words, "--help"])
        assert r.exit_code == 0 and "Usage:" in r.output, (words, r.output)
