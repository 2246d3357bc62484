"""The inference workers' fork server, as it starts (the one module it is told to
preload, :func:`dlforge.serve.server.worker_context`): it dies with the serving process
that started it, and imports once what every worker needs before it loads a model.

Without the first, a serving process killed with SIGKILL would leave its fork server
running (its forked HTTP processes hold the pipe whose end would stop it), and with
it the inference workers, which die with their parent, the fork server
(:func:`dlforge.core.process.die_with_parent` in :func:`dlforge.serve.parts.build_parts`).

The imports are :func:`dlforge.core.process.preload`'s: without the garbage collector's
passes over a growing heap, then frozen. A worker forked afterwards shares those
objects with the fork server and its siblings, and its own collections never walk
them (nor write to their pages, which would copy them into the worker).
"""

from dlforge.core.process import die_with_parent, preload

die_with_parent()

# What an inference worker imports before it loads a model. A worker started, or
# restarted after a crash, pays only for loading its models.
LIBRARIES = ("torch", "mlflow", "litserve", "dlforge.serve.api", "dlforge.models.package")

preload(LIBRARIES)
