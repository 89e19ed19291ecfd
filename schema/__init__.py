"""runners.yaml: the pydantic models, the located loader and the validator CLI.

Nothing here imports Pulumi: the validator runs in pre-commit and editors.
"""

from schema.loader import LoadError, Problem, load_file, load_text
from schema.models import AwsPool, GcpPool, GitHubTarget, Pool, RunnersFile

__all__ = [
    "AwsPool",
    "GcpPool",
    "GitHubTarget",
    "LoadError",
    "Pool",
    "Problem",
    "RunnersFile",
    "load_file",
    "load_text",
]
