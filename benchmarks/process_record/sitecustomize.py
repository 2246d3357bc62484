"""Put first on PYTHONPATH by ``bench_suite.py --processes``: every Python process of
the test run, as it exits, writes its command line, its own CPU seconds and the test
that started it to a file of its own in ``$DLFORGE_PROCESS_RECORD``.

The test is pytest's ``PYTEST_CURRENT_TEST``, which the processes a test starts inherit
(and their processes in turn). A process that ends by a signal or ``os._exit`` (a
forked worker, a killed one) writes nothing; nor does one started with ``-I``, ``-E``
or ``-S``, or with an environment of its own that leaves PYTHONPATH out.
"""

import os

_FOLDER = os.environ.get("DLFORGE_PROCESS_RECORD")


def _record() -> None:
    import json
    import sys

    times = os.times()
    entry = {"argv": list(getattr(sys, "orig_argv", sys.argv)),
             "cpu_s": round(times.user + times.system, 3),
             "test": os.environ.get("PYTEST_CURRENT_TEST")}
    try:
        with open(os.path.join(_FOLDER, f"{os.getpid()}-{os.urandom(4).hex()}.json"), "w") as f:
            json.dump(entry, f)
    except OSError:
        pass  # a process whose folder is gone (a test's chroot, a full disk): not counted


if _FOLDER:
    import atexit

    atexit.register(_record)
