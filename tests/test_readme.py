"""The README's two commands stay true: CI runs its test command, and its main command works on the sample."""

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_exactly_the_readme_test_command():
    test_command = next(c for c in readme_commands() if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines(), \
        f".ci/run must contain the README's test command:\n{test_command}"


def test_readme_main_command_runs_on_the_shipped_sample(cli, monkeypatch):
    main = readme_commands()[0]
    assert "pytest" not in main
    cbir_part = main.split("&& cbir ", 1)[1]
    monkeypatch.chdir(ROOT)
    code, out, err = cli(*shlex.split(cbir_part))
    assert code == 0, err
    assert "kodim23.jpg" in out
