"""offline-recall: a daily TFX batch pipeline from click logs to top-N recall candidates.

The repository keeps its packages as top-level folders (`pipeline/`, `components/`, `trainer/`,
`core/` (TF-free shared modules: contracts, config sections, dates, files),
`schema/`) so that a newcomer finds every stage by name. Installed bare, names like `pipeline`
would clash with other distributions, so they are mapped under one import name,
`offline_recall`.
"""

from setuptools import find_packages, setup

_TOP_LEVEL = ("pipeline", "components", "trainer", "core", "schema")

# The root package itself (`offline_recall/__init__.py`): the import root, and where TFX's Kubeflow
# entrypoint finds the custom artifact types by their schema titles.
_packages = ["offline_recall"]
for _top in _TOP_LEVEL:
    _packages.append(f"offline_recall.{_top}")
    _packages.extend(f"offline_recall.{_top}.{sub}" for sub in find_packages(_top))

setup(
    name="offline-recall",
    version="0.1.0",
    description="TFX batch pipeline: click logs to top-N recall candidates per user.",
    python_requires=">=3.11",
    packages=_packages,
    package_dir={
        "offline_recall": "offline_recall",
        **{f"offline_recall.{top}": top for top in _TOP_LEVEL},
    },
    package_data={"offline_recall.schema": ["*.pbtxt"]},
    # Exact versions live in constraints.txt; install with `make install`.
    install_requires=[
        "tfx==1.15.1",
        "tensorflow==2.15.1",
        "tensorflow-estimator==2.15.0",
        "tensorflow-transform==1.15.0",
        "tensorflow-data-validation==1.15.1",
        "apache-beam==2.56.0",
        "faiss-cpu==1.15.1",
        "numba==0.68.0",
        "numpy==1.26.4",
        "pyarrow==10.0.1",
        "scipy==1.12.0",
        "PyYAML",
        "matplotlib==3.9.2",
    ],
    entry_points={"console_scripts": ["offline-recall=offline_recall.pipeline.cli:main"]},
)
