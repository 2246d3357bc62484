"""Hydra finds dlforge's packaged base configs after the project's own ``conf/``.

Hydra loads every module under the ``hydra_plugins`` namespace package and calls
each :class:`SearchPathPlugin`; this one appends ``pkg://dlforge.conf``. The
project's config folder stays first, so a project file of the same name (say
``conf/trainer/default.yaml``) replaces the packaged one.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class DlforgeSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="dlforge", path="pkg://dlforge.conf")
