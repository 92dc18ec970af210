"""The Dockerfile installs what `make install` installs: no Docker engine runs here, so this reads
the file and checks it against the Makefile (same pins, same flags, Python 3.11)."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_dockerfile_installs_with_the_makefile_pins_on_python_311():
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^FROM python:3\.11", dockerfile, re.M)
    for needle in ("-r requirements.txt -c constraints.txt", "--ignore-requires-python"):
        assert needle in dockerfile and needle in makefile
    assert "'setuptools<70'" in dockerfile and "'setuptools<70'" in makefile
    # Every package folder the wheel maps is copied into the image.
    setup = (ROOT / "setup.py").read_text()
    tops = re.search(r"_TOP_LEVEL = \(([^)]*)\)", setup).group(1)
    for top in re.findall(r'"(\w+)"', tops):
        assert f"COPY {top} ./{top}" in dockerfile, top
    assert "image:" in makefile and "docker build" in makefile
