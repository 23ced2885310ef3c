"""Packaging: `pip wheel .` builds a wheel with the packages and the bundled assets, and the installed
wheel works from outside the repository (`reenact --version`, bundled weights found under
<prefix>/share/reenact/assets). The build runs on a copy of the tree, so the checkout stays clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from reenact_app import __version__

REPO = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".git", ".hypothesis", "__pycache__", "*.egg-info", "build", "dist", "runs", "*.pyc",
                              ".pytest_cache", "*.onnx", "*.onnx.data", "out")
DATA = f"reenact-{__version__}.data/data/share/reenact/assets"
ASSETS = ("weights/default.safetensors", "avatars/monalisa.jpg", "avatars/gogol.jpg", "driving/demo.mp4")
PACKAGES = ("reenact_app/__init__.py", "reenact_app/cli.py", "reenact_app/images.py", "reenact_app/gui/__init__.py",
            "reenact_app/gui/services/__init__.py", "reenact_app/gui/services/engine_service.py",
            "reenact_app/sinks/__init__.py", "reenact_app/engines/__init__.py", "reenact_app/commands/live.py",
            "models/__init__.py", "reenact_common/paths.py", "export/__init__.py", "training/__init__.py")


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("REENACT_ASSETS", "PYTHONPATH")}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build from a copy of the working tree (no build isolation: offline machines; setuptools is local)."""
    root = tmp_path_factory.mktemp("pkg")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=SKIP)
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-w", str(root / "dist")], src)
    (found,) = (root / "dist").glob("reenact-*.whl")
    return found


def test_wheel_contains_packages_assets_and_entry_points(wheel):
    assert wheel.name.startswith(f"reenact-{__version__}-")  # version from reenact_app.__version__ only
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [p for p in PACKAGES if p not in names] + [f"{DATA}/{a}" for a in ASSETS if f"{DATA}/{a}" not in names]
    assert not missing, missing
    assert not any(n.startswith(("tests/", "benchmarks/", "experiments/", "assets/")) for n in names)  # assets only as data files
    weights = zipfile.ZipFile(wheel).getinfo(f"{DATA}/weights/default.safetensors")
    assert weights.file_size > 10**6  # the real weights, not a Git LFS pointer
    entry = zipfile.ZipFile(wheel).read(f"reenact-{__version__}.dist-info/entry_points.txt").decode()
    assert "reenact = reenact_app.cli:main" in entry and "reenact-app = reenact_app.gui.main:main" in entry


def test_wheel_ships_the_media_licences(wheel):
    assert f"{DATA}/ATTRIBUTION.md" in zipfile.ZipFile(wheel).namelist()


_SNIPPET = """
import sys, models, reenact_common.paths
model = models.load_checkpoint()
print("MODULE", models.__file__)
print("WEIGHTS", reenact_common.paths.default_weights())
print("PARAMS", sum(model.parameter_count().values()))
"""


def _current_site_dirs() -> list[str]:
    """The site-packages folders this interpreter imports from (a venv's, the user's or the system's).
    `venv --system-site-packages` would show the *base* interpreter's instead, which has none of the
    dependencies when the tests run inside a virtual environment."""
    return [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


def _venv_with_current_dependencies(venv: Path, cwd: Path) -> Path:
    """A bare venv that also sees the current environment's packages (torch...) after its own, so the
    wheel installed into it is what `import models` finds. Returns its python."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd)
    py = venv / "bin" / "python"
    own = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd).stdout.strip()
    # plain folders (no `import` lines): the current environment's .pth hooks, e.g. an editable install of
    # this repository, stay out, so they can't shadow the wheel
    (Path(own) / "current_environment.pth").write_text("\n".join(_current_site_dirs()) + "\n")
    return py


def test_installed_wheel_works_outside_the_repo(wheel, tmp_path):
    venv = tmp_path / "venv env ü"  # a prefix with a space and a non-ASCII character
    py = _venv_with_current_dependencies(venv, tmp_path)
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", str(wheel)], tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    version = _run([str(venv / "bin" / "reenact"), "--version"], elsewhere)
    assert version.stdout.strip() == f"reenact {__version__}"
    out = _run([str(py), "-c", _SNIPPET], elsewhere).stdout
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    site = Path(lines["MODULE"]).resolve()
    assert str(site).startswith(str(venv.resolve())), f"imported from {site}, not the installed wheel"
    assert Path(lines["WEIGHTS"]) == venv / "share/reenact/assets/weights/default.safetensors"
    assert int(lines["PARAMS"]) > 100_000
