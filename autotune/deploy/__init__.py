"""Deploy targets: the Launcher interface, plug-in discovery, failures, leftovers, GPUs."""

from autotune.deploy.base import Endpoint, Launcher, LaunchSpec, create_launcher, free_port
from autotune.deploy.failures import Failure, TrialFailure

__all__ = [
    "Endpoint",
    "Failure",
    "LaunchSpec",
    "Launcher",
    "TrialFailure",
    "create_launcher",
    "free_port",
]
