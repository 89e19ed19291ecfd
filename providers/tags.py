"""Tags (AWS) and labels (GCP) every resource of a pool carries, defined once."""

from __future__ import annotations

from providers.base import StackContext
from providers.naming import fitted, slug
from schema.models import PoolCommon

POOL_TAG = "gh-runners-pool"
STACK_TAG = "gh-runners-stack"
MANAGED_BY_TAG = "managed-by"


def pool_tags(pool: PoolCommon, context: StackContext) -> dict[str, str]:
    """The pool's own tags plus ours; values fit GCP label rules, so both clouds take them."""
    return {
        **pool.tags,
        POOL_TAG: pool.name,
        STACK_TAG: fitted(slug(context.stack), 63),
        MANAGED_BY_TAG: "gh-runners",
    }


def stack_tags(context: StackContext) -> dict[str, str]:
    """Tags of what a stack's pools share (a region's network): ours only, no pool's."""
    return {STACK_TAG: fitted(slug(context.stack), 63), MANAGED_BY_TAG: "gh-runners"}
