"""Hydra finds the config files of deploy targets that other packages add.

A package registered under the entry-point group ``autotune.launchers`` keeps its
``deploy/<name>.yaml`` inside itself; this plug-in puts ``pkg://<package>`` on the
search path (after autotune's own config), so ``deploy=<name>`` composes it.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class AutotunePluginsSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from autotune.deploy.plugins import config_packages

        for package in config_packages():
            search_path.append(provider="autotune-plugin", path=f"pkg://{package}")
