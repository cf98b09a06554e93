"""A plain (non-editable) install works the way Python users install: build the wheel, install it into a fresh venv,
and sample the bundled model by name from an unrelated directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ganserve

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _source_copy(dest: Path) -> Path:
    """The project's files as a clean clone would have them (tracked + new, never ignored build output)."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("install")
    src = _source_copy(tmp / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp / "dist"), str(src)], check=True, capture_output=True, timeout=300)  # fmt: skip
    (wheel,) = (tmp / "dist").glob("ganserve-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # Dependencies (torch, numpy ...) come from this environment's site-packages through a .pth line; a directory
    # added that way is not scanned for .pth files, so the editable ganserve of this environment stays invisible.
    (site,) = (venv / "lib").glob("python*/site-packages")
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)  # fmt: skip
    return venv


def test_wheel_install_samples_the_bundled_model_from_anywhere(wheel_venv, tmp_path):
    py = wheel_venv / "bin" / "python"
    where = subprocess.run([str(py), "-c", "import ganserve, ganserve.loading as l; print(ganserve.__file__); "
                            "print(l.bundled_dir()); print(','.join(ganserve.available_models()))"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert where[0].startswith(str(wheel_venv)) and where[1].startswith(str(wheel_venv))  # the wheel, not the repo
    assert "stylegan2-fashion-32" in where[2].split(",")
    out = tmp_path / "s.png"
    subprocess.run([str(py), "-m", "ganserve.cli", "sample", "--model", "stylegan2-fashion-32", "--seeds", "5",
                    "--out", str(out)], cwd=tmp_path, check=True, capture_output=True, timeout=300)  # fmt: skip
    want = ganserve.load("stylegan2-fashion-32").sample(seeds=[5]).images[0]
    assert np.array_equal(np.asarray(Image.open(out))[..., None], want)


def test_unknown_name_says_where_it_looked_and_how_to_add_a_folder(wheel_venv, tmp_path):
    py = wheel_venv / "bin" / "python"
    proc = subprocess.run([str(py), "-m", "ganserve.cli", "sample", "--model", "no-such-model"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown model 'no-such-model'" in proc.stderr and "GANSERVE_CHECKPOINTS" in proc.stderr
    assert str(wheel_venv) in proc.stderr  # names the bundled folder it searched


def test_every_package_folder_is_listed_in_pyproject():
    """The explicit packages list (needed for the kernels/ export/ handlers/ mapping) must not miss a new folder."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ganserve").rglob("__init__.py")}
    assert on_disk <= listed, f"add to pyproject's packages: {sorted(on_disk - listed)}"


def test_the_installed_entry_points_declare_every_export_format(wheel_venv, tmp_path):
    """pyproject's ``ganserve.backends`` lines as a wheel installs them: each names a GraphFormat that the export
    registry and the core's backends both find (one declaration per format)."""
    py = wheel_venv / "bin" / "python"
    code = (
        "from ganserve.backends import backend_names; from ganserve.export import graph_formats; "
        "print(','.join(backend_names())); print(','.join(n + f.suffix for n, f in graph_formats().items()))"
    )
    out = subprocess.run([str(py), "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.split() == ["eager,onnx,pt2", "onnx.onnx,pt2.pt2"]
