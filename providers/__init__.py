"""Provider registry: provider name -> backend class, imported lazily.

An AWS-only runners.yaml never imports pulumi_gcp (whose first import costs
seconds), and a Pulumi program is not an installed distribution, so a plain
dict beats an entry-point plugin system.
"""

from __future__ import annotations

import importlib
from typing import Any

from providers.base import Backend, StackContext

BACKENDS: dict[str, str] = {
    "aws": "providers.aws.backend:AwsBackend",
    "gcp": "providers.gcp.backend:GcpBackend",
}


def load_backend(name: str, context: StackContext) -> Backend[Any]:
    module_name, _, class_name = BACKENDS[name].partition(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    backend: Backend[Any] = backend_class(context)
    return backend


class Backends:
    """One backend instance per provider name for the whole program run."""

    def __init__(self, context: StackContext) -> None:
        self.context = context
        self._loaded: dict[str, Backend[Any]] = {}

    def __getitem__(self, name: str) -> Backend[Any]:
        if name not in self._loaded:
            self._loaded[name] = load_backend(name, self.context)
        return self._loaded[name]
