"""kojid builder plugin: run buildArch, rebuildSRPM, buildSRPMFromSCM and createrepo tasks
in Podman containers.

Install: copy this file into kojid's ``pluginpath`` (default ``/usr/lib/koji-builder-plugins``)
and add ``plugins = adjutant`` to ``[kojid]`` in ``/etc/kojid/kojid.conf``; settings go to
``/etc/kojid/plugins/adjutant.conf`` (see kojid_patch/README.md and docs/deploy.md).

kojid loads plugins after registering its own handlers, and every task handler class found in
a plugin replaces the handler of its methods: the two classes below subclass kojid's own
BuildArchTask and CreaterepoTask (reached through ``__main__``, which is kojid itself); a
third runs ``saveFailedTree`` for the failed roots koji-adjutant keeps.
"""

from koji_adjutant.kojid import kojid_handlers as _kojid_handlers

import __main__ as _kojid

_handlers = _kojid_handlers(_kojid)
AdjutantBuildArchTask = _handlers["AdjutantBuildArchTask"]
AdjutantCreaterepoTask = _handlers["AdjutantCreaterepoTask"]
AdjutantSaveFailedTreeTask = _handlers["AdjutantSaveFailedTreeTask"]
AdjutantRebuildSRPM = _handlers["AdjutantRebuildSRPM"]
AdjutantBuildSRPMFromSCMTask = _handlers["AdjutantBuildSRPMFromSCMTask"]
