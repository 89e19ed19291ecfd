"""Root's own state: small files in directories only root can write, never reached through a symlink.

The runner user owns its working files; nothing of root's lives among them (a
marker in the runner directory could be swapped for a symlink that root would
then truncate). Every open here is O_NOFOLLOW, and a directory that is not
root's own (or is a symlink) is refused rather than used.
"""

from __future__ import annotations

import contextlib
import os
import stat

from .http import AgentError

NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def private_dir(path: str) -> str:
    """`path` as a directory only root may write, created 0700 if missing."""
    with contextlib.suppress(FileExistsError):
        os.makedirs(path, mode=0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise AgentError(f"{path} is not a directory only root can write; refusing to keep state there")
    return path


def read(directory: str, name: str) -> str:
    try:
        fd = os.open(os.path.join(private_dir(directory), name), os.O_RDONLY | NOFOLLOW)
    except FileNotFoundError:
        return ""
    with os.fdopen(fd, encoding="utf-8") as f:
        return f.read().strip()


def write(directory: str, name: str, text: str) -> None:
    """Replace `name` atomically (a new file, then rename: nothing else is ever truncated)."""
    path = os.path.join(private_dir(directory), name)
    fd = os.open(f"{path}.new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(f"{path}.new", path)


def remove(directory: str, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(private_dir(directory), name))
