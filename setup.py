import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


# The two measured stacks, 2.6.2+ and 3.3.x (requirements-paddle2.txt and
# requirements-paddle3.txt pin one each); 3.0-3.2 were never tested.
PADDLE = "paddlepaddle>=2.6.2,!=3.0.*,!=3.1.*,!=3.2.*,<3.4"


def read_requirements(name):
    with open(os.path.join(HERE, name)) as f:
        lines = (line.split("#")[0].strip() for line in f)
        return [line for line in lines if line and not line.startswith(("pytest", "-r"))]


setup(
    name="paddle-pssl",
    version="0.1.0",
    description="Pre-train PaddleSeg models on pseudo labels distilled from "
    "explanations of image classifiers (PSSL), plus PMM, HFPL and "
    "Mix-and-Match tuning.",
    packages=find_packages(include=["paddle_pssl", "paddle_pssl.*"]),
    python_requires=">=3.8",
    # interpretdl is deliberately absent: see requirements-nodeps.txt.
    install_requires=[PADDLE] + read_requirements("requirements.txt"),
    include_package_data=True,
    license="Apache-2.0",
)
