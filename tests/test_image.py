"""The worker image, read rather than built: no Docker engine runs here. Checks the Dockerfile
against the Makefile, the requirements and the installed Beam SDK (fast tier)."""

import importlib.util
import pathlib
import re

import apache_beam

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEV_ONLY = {"kfp", "apache-airflow", "pytest", "ruff"}


def _requirements(name: str) -> dict[str, str]:
    """{package: the requirement line} of a requirements file, includes left out."""
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-r"):
            found[re.split(r"[=<>\[ ]", line, maxsplit=1)[0].lower()] = line
    return found


def _install_lines(dockerfile: str) -> str:
    return " ".join(re.findall(r"pip install[^&]*", dockerfile.replace("\\\n", " ")))


def test_the_image_installs_the_runtime_requirements_from_the_wheelhouse_only():
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = _install_lines(dockerfile)
    assert installs.count("pip install") == 2
    assert installs.count("--no-index --find-links /tmp/install/wheelhouse") == 2
    assert "-r /tmp/install/requirements.txt -c /tmp/install/constraints.txt" in installs
    assert "--ignore-requires-python" in installs
    assert "requirements-dev" not in dockerfile
    # The Makefile builds that wheelhouse from the same files, and installs the dev set on top.
    makefile = (ROOT / "Makefile").read_text()
    assert "download -q --ignore-requires-python -r requirements.txt -c constraints.txt" in makefile
    assert "-r requirements-dev.txt -c constraints.txt" in makefile
    assert re.search(r"^image: wheels$", makefile, re.M)


def test_runtime_requirements_hold_no_orchestrator_or_test_tool():
    runtime, dev = _requirements("requirements.txt"), _requirements("requirements-dev.txt")
    assert not DEV_ONLY & set(runtime)
    assert DEV_ONLY <= set(dev)
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text()
    # The package's own install_requires pin what the runtime file pins.
    setup = (ROOT / "setup.py").read_text()
    for line in runtime.values():
        if "==" in line:
            assert f'"{line}"' in setup, line


def test_beam_boot_comes_from_the_sdk_image_of_the_installed_beam_and_python():
    dockerfile = (ROOT / "Dockerfile").read_text()
    beam = re.search(r"^FROM apache/beam_python(\d+\.\d+)_sdk:(\S+) AS beam$", dockerfile, re.M)
    assert beam, "no Beam SDK stage"
    python = re.search(r"^FROM python:(\d+\.\d+)-slim$", dockerfile, re.M).group(1)
    assert beam.group(1) == python == "3.11"
    assert beam.group(2) == apache_beam.__version__ == "2.56.0"
    assert _requirements("requirements.txt")["apache-beam"] == f"apache-beam=={beam.group(2)}"
    assert "COPY --from=beam /opt/apache/beam /opt/apache/beam" in dockerfile
    assert re.search(r'^ENTRYPOINT \["/opt/apache/beam/boot"\]$', dockerfile, re.M)
    # What boot starts in the image's Python: Beam's SDK worker.
    assert importlib.util.find_spec("apache_beam.runners.worker.sdk_worker_main") is not None


def test_the_image_runs_as_a_user_other_than_root():
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(rf"useradd --uid {users[-1]} ", dockerfile)


def test_every_package_folder_goes_into_the_wheel():
    setup = (ROOT / "setup.py").read_text()
    tops = re.search(r"_TOP_LEVEL = \(([^)]*)\)", setup).group(1)
    folders = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert folders == set(re.findall(r'"(\w+)"', tops)) | {"offline_recall"}
