"""Imported first by the inference workers' fork server as it starts
(:data:`dlforge.serve.server.WORKER_PRELOAD`): the fork server dies with the serving
process that started it.

Without this, a serving process killed with SIGKILL would leave its fork server
running (its forked HTTP processes hold the pipe whose end would stop it), and with
it the inference workers, which die with their parent, the fork server
(:func:`dlforge.core.process.die_with_parent` in :func:`dlforge.serve.parts.build_parts`).
"""

from dlforge.core.process import die_with_parent

die_with_parent()
