"""Throwaway virtual environments for the packaging, plugin and pre-commit tests.

Every venv here is built offline: instead of downloading trainlint's dependencies again, it
sees the site-packages of the interpreter running the tests through a ``.pth`` file. That
works whether pytest runs from a venv or from a system Python (``--system-site-packages``
only reaches the *base* interpreter's packages, not those of the venv pytest runs in).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def parent_site_packages() -> list[str]:
    """The directories this interpreter installs packages into (purelib, platlib)."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


class ThrowawayVenv:
    """A venv under ``root`` that borrows the test interpreter's packages.

    ``activate_parent_pth``: also run the parent's ``.pth`` files (``site.addsitedir``), which
    is what makes an editable install of trainlint importable. Leave it off to prove that
    trainlint comes from what was installed into this venv and nothing else.
    """

    def __init__(self, root: Path, *, activate_parent_pth: bool) -> None:
        self.root = root
        venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt", clear=True).create(root)
        scripts = "Scripts" if os.name == "nt" else "bin"
        self.bin = root / scripts
        self.python = self.bin / ("python.exe" if os.name == "nt" else "python")
        purelib = self.run_python("-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
        self.site_packages = Path(purelib.stdout.strip())
        if activate_parent_pth:
            lines = [f"import site; site.addsitedir({p!r})" for p in parent_site_packages()]
        else:
            lines = parent_site_packages()
        # "zz": processed after anything installed into the venv itself, so those win.
        (self.site_packages / "zz_parent_site_packages.pth").write_text("\n".join(lines) + "\n")

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["PATH"] = os.pathsep.join([str(self.bin), env.get("PATH", "")])
        env["VIRTUAL_ENV"] = str(self.root)
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env["NO_COLOR"] = "1"
        return env

    def run(
        self, *args: str | Path, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args],
            cwd=cwd,
            env=dict(env) if env is not None else self.environment(),
            capture_output=True,
            text=True,
            check=False,
        )

    def run_python(
        self, *args: str | Path, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run(self.python, *args, cwd=cwd)

    def pip_install(self, *args: str | Path) -> None:
        """``pip install`` into this venv, offline, without touching the parent's packages."""
        result = self.run_python(
            "-m", "pip", "install", "--no-index", "--no-deps", "--ignore-installed", *args
        )
        assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"


def build_wheel(source: Path, out: Path) -> Path:
    """Build ``source`` into a wheel in ``out`` with this interpreter's setuptools, offline."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--wheel-dir", str(out), str(source)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert result.returncode == 0, (
        "building the wheel failed (the test extras provide setuptools>=77):\n"
        f"{result.stdout}\n{result.stderr}"
    )
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]
