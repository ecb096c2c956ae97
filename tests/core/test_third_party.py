"""A third-party plugin installed into a fresh virtual environment (pip, no network) is discovered,
usable from a recipe, and gone once uninstalled; `misstep new-plugin` output installs and passes its test."""

import json
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def sh(*args, **kwargs):
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv that sees this interpreter's packages (misstep, pip, setuptools) read-only, so that
    nothing is downloaded; what pip installs there stays there."""
    folder = tmp_path_factory.mktemp("venv")
    sh(sys.executable, "-m", "venv", "--without-pip", folder)
    python = folder / "bin" / "python"
    own = sh(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    parents = [p for p in site.getsitepackages() + [site.getusersitepackages()] if Path(p).is_dir()]
    (Path(own) / "parent-env.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in parents))
    return python


def pip_install(python, path, scratch):
    """Install a copy (building in place would leave build/ folders in the source tree)."""
    copy = scratch / f"src-{path.name}"
    shutil.copytree(path, copy)
    sh(python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-build-isolation", copy)


def plugin_names(python):
    out = sh(python, "-m", "misstep", "plugins", "--json")
    return {p["name"]: p for p in json.loads(out.stdout)["plugins"]}


def test_example_plugin_install_use_uninstall(venv, tmp_path):
    pip_install(venv, ROOT / "examples" / "misstep-example", tmp_path)
    installed = plugin_names(venv)
    assert installed["example"]["components"] == {"task": ["times-table"], "verifier": ["same-parity"]}
    sh(venv, "-m", "misstep", "run", ROOT / "examples" / "misstep-example" / "recipe.yaml", "--run-dir",
       tmp_path / "run", "--quiet")
    lines = (tmp_path / "run" / "tasks" / "tasks.jsonl").read_text().splitlines()
    assert len(lines) == 5 and all("times" in json.loads(line)["question"] for line in lines)
    sh(venv, "-m", "pytest", "-q", "-p", "no:cacheprovider", ROOT / "examples" / "misstep-example" / "tests",
       cwd=tmp_path)
    sh(venv, "-m", "pip", "uninstall", "--quiet", "-y", "misstep-example")
    assert "example" not in plugin_names(venv)


def test_scaffolded_plugin_installs_and_its_test_passes(venv, tmp_path):
    sh(sys.executable, "-m", "misstep", "new-plugin", "shout", "--dir", tmp_path)
    folder = tmp_path / "misstep-shout"
    assert {p.name for p in folder.iterdir()} == {"pyproject.toml", "README.md", "misstep_shout", "tests"}
    pip_install(venv, folder, tmp_path)
    assert plugin_names(venv)["shout"]["components"] == {"tool": ["shout"]}
    sh(venv, "-m", "pytest", "-q", "-p", "no:cacheprovider", folder / "tests", cwd=tmp_path)
    again = subprocess.run([sys.executable, "-m", "misstep", "new-plugin", "shout", "--dir", tmp_path],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
    bad = subprocess.run([sys.executable, "-m", "misstep", "new-plugin", "Bad Name!"], capture_output=True, text=True)
    assert bad.returncode == 2 and "lower-case" in bad.stderr
