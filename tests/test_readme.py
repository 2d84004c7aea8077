"""The README's two commands stay true: CI runs its test command, and its main command works on the sample."""

import os
import re
import shlex
from pathlib import Path

import pytest

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


def test_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """It failed as written: "~" was not expanded, a str was iterated over, and result paths were relative to the
    database's folder instead of the caller's directory."""
    from helpers import write_photos

    code = re.findall(r"```python\n(.+?)\n```", (ROOT / "README.md").read_text(), re.S)[0]
    home = tmp_path / "home"
    write_photos(home / "Pictures", 8)
    work = tmp_path / "work"
    work.mkdir()
    (work / "query.jpg").write_bytes((home / "Pictures" / "p2.png").read_bytes())
    (work / "photo.png").write_bytes((home / "Pictures" / "p3.png").read_bytes())
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10
    paths = [line.split()[-1] for line in lines]
    assert all(Path(p).is_file() for p in paths)  # they open from the caller's directory
    assert lines[0].split()[1] == "0.0" and paths[0].endswith("p2.png")  # query.jpg is not indexed: p2.png first


def test_api_default_workers_match_the_command_line(monkeypatch, tmp_path):
    import inspect

    import cbir.index.api as api
    from cbir import Index
    from cbir.index import default_workers

    assert inspect.signature(Index.add).parameters["workers"].default is None
    seen = {}
    monkeypatch.setattr(api, "index_paths", lambda *args, **kwargs: seen.update(kwargs) or api.IndexReport())
    with Index.open(tmp_path / "i.db", create=True) as index:
        index.add(tmp_path, search_cache=False)
    assert seen["workers"] == default_workers()


@pytest.mark.slow  # seconds of work; the full suite runs it
def test_getting_started_runs_as_written_and_leaves_the_repository_clean(cli, tmp_path, monkeypatch):
    """Every cbir command of docs/getting-started.md runs, from a copy of the repository's sample, and writes only
    what .gitignore ignores (its outputs used to be left as untracked files in the repository)."""
    import shutil

    text = (ROOT / "docs" / "getting-started.md").read_text()
    lines = [line.split("  #")[0].strip() for block in re.findall(r"```bash\n(.+?)\n```", text, re.S)
             for line in block.splitlines() if "pip install" not in line]
    shutil.copytree(ROOT / "sample_index", tmp_path / "sample_index")
    monkeypatch.chdir(tmp_path)
    ran = 0
    for line in lines:
        for part in (p.strip() for p in line.split("&&")):
            words = shlex.split(part)
            if words[:2] == ["mkdir", "-p"]:
                os.makedirs(words[2], exist_ok=True)
            elif words[0] == "cbir":
                code, out, err = cli(*words[1:])
                assert code == 0, (part, err)
                ran += 1
    assert ran >= 5
    ignored = [p.strip() for p in (ROOT / ".gitignore").read_text().splitlines()]
    made = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                  if p.is_file() and not str(p.relative_to(tmp_path)).startswith("sample_index"))
    assert made and all(path.startswith("out/") for path in made) and "/out/" in ignored, made
