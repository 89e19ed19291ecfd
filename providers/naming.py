"""Every name the program derives, in one place.

Pulumi resource names are `<pool>-<part>` (Pulumi adds a random suffix for the
cloud name). A few cloud names must be known before the resource exists -- the
group and the secret, because the VM's user data carries them -- so they are
derived deterministically from project, stack and pool, and shortened with a
stable hash where a cloud's length limit would cut them.
"""

from __future__ import annotations

import hashlib
import re


def part(pool: str, what: str) -> str:
    """Pulumi resource name of one part of a pool: `codex-vpc`."""
    return f"{pool}-{what}"


def slug(text: str) -> str:
    """Lower-case letters, digits and single hyphens (GCP and AWS both accept it)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", text.lower())).strip("-") or "x"


def fitted(name: str, limit: int) -> str:
    """`name` if it fits, else a prefix of it plus 7 hex of its sha256 (stable)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:7]
    return f"{name[: limit - 8].rstrip('-')}-{digest}"


def stack_scoped(stack: str, pool: str, limit: int, prefix: str = "ghr") -> str:
    """A cloud name unique per stack and pool, e.g. `ghr-dev-codex`; starts with a letter."""
    return fitted(f"{prefix}-{slug(stack)}-{pool}", limit)


def deployment_scoped(project: str, stack: str, pool: str, limit: int, prefix: str = "ghr") -> str:
    """A cloud name unique per project, stack and pool, e.g. `ghr-gh-runners-dev-codex`.

    The project is part of it: two projects (or two copies of this one under
    other names) with a `dev` stack and the same pool share an account or a
    GCP project without colliding.
    """
    return fitted(f"{prefix}-{slug(project)}-{slug(stack)}-{pool}", limit)
