"""Finding the `misdirect` executable the wheel installed (as ruff and uv find theirs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from ._errors import MisdirectError

_EXE = "misdirect" + (".exe" if sys.platform == "win32" else "")


def find_binary() -> Path:
    """The `misdirect` executable: `$MISDIRECT_BINARY`, else the one this package's wheel put
    beside the interpreter's scripts (the venv's `bin/`, or the user scheme's), else the first
    on `PATH`."""
    given = os.environ.get("MISDIRECT_BINARY")
    if given:
        path = Path(given)
        if not path.is_file():
            raise MisdirectError(f"MISDIRECT_BINARY={given}: no such file")
        return path
    candidates = [Path(sysconfig.get_path("scripts")) / _EXE]
    user_scheme = f"{os.name}_user" if os.name != "nt" else "nt_user"
    try:
        candidates.append(Path(sysconfig.get_path("scripts", scheme=user_scheme)) / _EXE)
    except KeyError:
        pass
    candidates.append(Path(sys.executable).parent / _EXE)
    for path in candidates:
        if path.is_file():
            return path
    on_path = shutil.which("misdirect")
    if on_path:
        return Path(on_path)
    raise MisdirectError(
        "no misdirect executable: install the wheel (pip install misdirect), put misdirect on "
        "PATH, or set MISDIRECT_BINARY"
    )


def bundled(scenario_id: str, binary: Path | None = None) -> str:
    """The JSON text of a bundled scenario (`misdirect scenarios --show ID`)."""
    exe = binary or find_binary()
    try:
        done = subprocess.run(
            [str(exe), "scenarios", "--show", scenario_id],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise MisdirectError(f"bundled:{scenario_id}: {exe}: {error}") from None
    if done.returncode != 0:
        raise MisdirectError(done.stderr.decode(errors="replace").strip() or f"misdirect exited {done.returncode}")
    return done.stdout.decode()


def main() -> None:
    """`python -m misdirect ARGS` runs the binary with ARGS."""
    exe = str(find_binary())
    if sys.platform == "win32":
        sys.exit(subprocess.call([exe, *sys.argv[1:]]))
    os.execv(exe, [exe, *sys.argv[1:]])
