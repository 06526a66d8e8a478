"""Set-up-and-run commands for a fresh machine with only Python 3.11 and pip.

    python3 dev.py demo [demo options]   # the main job: NumPy only, in .venv-demo
    python3 dev.py test [pytest options] # lint + the whole cross-framework matrix, in .venv
    python3 dev.py test-minimal          # the suite where only smoothce's own needs are installed
    python3 dev.py docs                  # strict docs build + a test over its pages, in .venv-docs
    python3 dev.py bench [bench options] # the benchmark table, in .venv

Each command creates its virtual environment on first use and reinstalls only when
pyproject.toml or this file changes. The test environment pins torch==2.13.0, the CPU wheel
this project develops against (a plain `pip install torch` pulls a multi-GB CUDA build).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TEST_PINS = ["torch==2.13.0"]
ENVS = {
    # name: (folder, what to install)
    "demo": (".venv-demo", ["-e", ".[demo]"]),
    "test": (".venv", [*TEST_PINS, "-e", ".[all,test]"]),
    # what `pip install smoothce` brings, plus the test tools: the framework tests skip here
    "test-minimal": (".venv-min", ["-e", ".[minimal-test]"]),
    # mkdocstrings reads the source of an installed package; it cannot follow the editable
    # install's folder mapping, so the docs build installs a plain copy (refreshed every run)
    "docs": (".venv-docs", [".[docs]"]),
}


def _python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_env(name: str) -> Path:
    """Create or refresh the virtual environment ``name``; return its Python."""
    folder, requirements = ENVS[name]
    env = ROOT / folder
    stamp = env / ".smoothce-installed"
    digest = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + Path(__file__).read_bytes()
    ).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return _python(env)
    if not _python(env).exists():
        print(f"[dev] creating {folder}", flush=True)
        venv.create(env, with_pip=True)
    python = str(_python(env))
    print(f"[dev] installing {' '.join(requirements)} into {folder}", flush=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *requirements], cwd=ROOT, check=True)
    stamp.write_text(digest)
    return _python(env)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "test-minimal", "docs", "bench"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        python = ensure_env("demo")
        return subprocess.call([str(python), "-m", "smoothce.cli", "demo", *rest], cwd=ROOT)
    if command == "docs":
        python = str(ensure_env("docs"))
        refresh = [python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", "."]
        subprocess.run(refresh, cwd=ROOT, check=True)
        build = [python, "-m", "mkdocs", "build", "--strict", *rest]
        env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
        if subprocess.call(build, cwd=ROOT, env=env):
            return 1
        # then the checks over the built pages (tests/test_docs_site.py), on this very build
        site = next(
            (rest[i + 1] for i, a in enumerate(rest[:-1]) if a in ("-d", "--site-dir")), "site"
        )
        env["SMOOTHCE_SITE_DIR"] = str((ROOT / site).resolve())
        test = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_docs_site.py"]
        return subprocess.call(test, cwd=ROOT, env=env)
    if command == "test-minimal":
        python = str(ensure_env("test-minimal"))
        return subprocess.call([python, "-m", "pytest", "-rs", *rest], cwd=ROOT)
    python = ensure_env("test")
    if command == "bench":
        return subprocess.call([str(python), "-m", "smoothce.cli", "bench", *rest], cwd=ROOT)
    lint = subprocess.call([str(python), "-m", "ruff", "check", "."], cwd=ROOT)
    tests = subprocess.call([str(python), "-m", "pytest", *rest], cwd=ROOT)
    return lint or tests


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
