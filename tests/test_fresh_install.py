"""The README's two set-up commands on a fresh virtual environment (slow: builds from source).

The first command runs literally: `pip install . && qengine demo` in a new venv, from a copy of
the repository's tracked files. The second (`pip install -e ".[test]" && python -m pytest`) is
what .ci/run executes on a clean checkout for every submission; here its install is resolved
without installing (`pip install --dry-run`), so a dependency that cannot be found fails this
test, while the suite does not run itself recursively.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README.md must open with a bash block of set-up commands"
    cmds = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    assert len(cmds) == 2, f"README.md must open with exactly two set-up commands, got {cmds}"
    return cmds


def test_readme_opens_with_the_two_commands():
    first, second = _readme_commands()
    assert "pip install" in first and "qengine demo" in first
    assert "pip install" in second and "[test]" in second and "pytest" in second
    ci = (ROOT / ".ci" / "run").read_text()
    assert second in ci, ".ci/run must run the README's test command"


def _tracked_copy(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for f in files:
        src = ROOT / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)


def test_first_command_in_a_fresh_venv(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the repository's files")
    first, second = _readme_commands()
    repo = tmp_path / "repo"
    _tracked_copy(repo)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = dict(os.environ, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
               VIRTUAL_ENV=str(venv))
    env.pop("PYTHONPATH", None)
    r = subprocess.run(first, shell=True, cwd=repo, env=env, capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, f"{first!r} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert "accuracy" in r.stdout and "int8" in r.stdout and "faster" in r.stdout
    # the second command's install resolves in the same fresh environment
    install = second.split("&&")[0].strip() + " --dry-run"
    r = subprocess.run(install, shell=True, cwd=repo, env=env, capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, f"{install!r} failed:\n{r.stderr[-3000:]}"
