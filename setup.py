"""The package list: every package under autotune/ and hydra_plugins/, plus the two
top-level folders pyproject.toml maps under the autotune namespace (conf, launchers).
Everything else about the build is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(
            include=["autotune", "autotune.*", "hydra_plugins", "hydra_plugins.*"]
        ),
        "autotune.conf",
        "autotune.launchers",
    ]
)
