"""offline-recall's import root: `offline_recall.pipeline`, `.components`, `.trainer`, `.schema`.

The code lives in the repository's top-level folders; `setup.py` maps them under this package so
their names cannot clash with other distributions. This module also answers for the custom
artifact types by their schema title: a Kubeflow task's entrypoint (TFX's
`kubeflow_v2_run_executor`) imports a custom type by the title it carries in the package, so
`offline_recall.Recalls` must be importable from here. The classes load lazily, on first use, so
importing a TF-free module of the package does not pull in TFX.
"""

from __future__ import annotations

import pkgutil

# A source checkout on sys.path next to an installed copy: both hold parts of the package.
__path__ = pkgutil.extend_path(__path__, __name__)

TYPE_NAMESPACE = __name__


def __getattr__(name: str):
    from offline_recall.components import artifacts

    for artifact_type in artifacts.CUSTOM_TYPES:
        if artifact_type.TYPE_NAME == f"{TYPE_NAMESPACE}.{name}":
            return artifact_type
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
