"""Model capabilities and prices as data (``models.toml``) with a typed loader.

No code path names a model: everything model-specific is looked up here.
"""

from __future__ import annotations

from imagegate.catalog.loader import (
    Catalog,
    ModelSpec,
    Pricing,
    SizeRule,
    TokenTable,
    default_catalog,
    emulated_deployments_data,
    load_catalog,
    parse_size,
)

__all__ = [
    "Catalog",
    "ModelSpec",
    "Pricing",
    "SizeRule",
    "TokenTable",
    "default_catalog",
    "emulated_deployments_data",
    "load_catalog",
    "parse_size",
]
