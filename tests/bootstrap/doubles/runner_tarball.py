"""Build a fake ``actions-runner-linux-<arch>-<version>.tar.gz``.

The archive has the real layout (``./config.sh``, ``./run.sh``,
``./run-helper.sh.template``, ``./env.sh``, ``./safe_sleep.sh``,
``./bin/Runner.Listener``, ``./bin/installdependencies.sh``) but the listener is
:mod:`fake_runner.listener`, a stdlib-only Python script: see its docstring for
the contract it honours and what it records. ``./bin/fake-ldconfig`` stands for
the VM's linker cache (``ldcache``), which config.sh, the listener and
installdependencies.sh consult. Serve the archive
with ``GitHubDouble.add_runner_release`` so the agent downloads and verifies it
exactly as it would the real one.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAKE_DIR = Path(__file__).resolve().parent / "fake_runner"
DEFAULT_VERSION = "2.330.0"
# Where the listener appends its JSON lines unless told otherwise (relative to the install dir).
DEFAULT_RECORD = "_fake_runner/calls.jsonl"

_FILES = {  # path in archive -> (source file, mode)
    "config.sh": ("config.sh", 0o755),
    "run.sh": ("run.sh", 0o755),
    "run-helper.sh.template": ("run-helper.sh.template", 0o755),
    "env.sh": ("env.sh", 0o755),
    "safe_sleep.sh": ("safe_sleep.sh", 0o755),
    "bin/Runner.Listener": ("listener.py", 0o755),
    "bin/installdependencies.sh": ("installdependencies.sh", 0o755),
    "bin/fake-ldconfig": ("fake-ldconfig", 0o755),
}


def runner_tarball_bytes(version: str = DEFAULT_VERSION, arch: str = "x64", *, control_url: str | None = None,
                         record: Path | str | None = None, ldcache: Path | str | None = None) -> bytes:
    """The gzip'd archive as bytes.

    ``control_url``: the GitHub double's base URL, needed by ``config.sh`` (JIT
    runners find the double through their JIT config). ``record``: absolute path
    of the JSON-lines record file (default: ``_fake_runner/calls.jsonl`` inside
    the install dir; ``$FAKE_RUNNER_RECORD`` overrides both at run time).
    ``ldcache``: a text file standing for the VM's linker cache (``ldconfig``'s
    listing); while it does not exist the real ldconfig answers.
    """
    conf: dict[str, Any] = {"version": version, "arch": arch}
    if control_url:
        conf["control_url"] = control_url
    if record:
        conf["record"] = str(record)
    buf = io.BytesIO()
    mtime = int(time.time())
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name: str, data: bytes, mode: int) -> None:
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.mode, info.mtime = len(data), mode, mtime
            tar.addfile(info, io.BytesIO(data))

        for directory in ("bin", "externals"):
            info = tarfile.TarInfo(f"./{directory}")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
        for name, (source, mode) in _FILES.items():
            add(name, (FAKE_DIR / source).read_bytes(), mode)
        add(".fake_runner.json", json.dumps(conf).encode(), 0o644)
        add("bin/.fake_ldcache", str(ldcache or "").encode(), 0o644)
    return buf.getvalue()


def build_runner_tarball(dest_dir: Path, version: str = DEFAULT_VERSION, arch: str = "x64", *,
                         control_url: str | None = None, record: Path | str | None = None,
                         ldcache: Path | str | None = None) -> Path:
    """Write ``actions-runner-linux-<arch>-<version>.tar.gz`` into ``dest_dir``."""
    path = Path(dest_dir) / f"actions-runner-linux-{arch}-{version}.tar.gz"
    path.write_bytes(runner_tarball_bytes(version, arch, control_url=control_url, record=record, ldcache=ldcache))
    return path


@dataclass
class RunnerRelease:
    """A fake runner tarball as published on the GitHub double (``runner_release`` fixture)."""

    version: str
    tarball: Path
    sha256: str
    record: Path  # JSON lines written by the fake runner's scripts
    ldcache: Path | None = None  # the fake linker cache (absent: the real ldconfig answers)

    def hide_libicu(self) -> None:
        """The VM has no libicu (a minimal image): the linker cache lists only libc."""
        assert self.ldcache is not None
        self.ldcache.write_text("\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6\n")
        self.ldcache.chmod(0o666)

    def records(self, event: str | None = None) -> list[dict[str, Any]]:
        """Recorded events, optionally only those named ``event``."""
        return [r for r in read_records(self.record) if event is None or r["event"] == event]


def read_records(path: Path) -> list[dict[str, Any]]:
    """The fake runner's JSON-lines record (empty if it never ran)."""
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
