"""The example Python worker (examples/python-worker/worker.py) with one more handler, run by
test/system/autoscale.int.test.ts. Takes the example's flags and environment.

  py.sleep  appends the job id to JOBMESH_TEST_STARTED_FILE when it starts, sleeps data["ms"]
            milliseconds, then appends the job id to JOBMESH_TEST_DONE_FILE (one line per start or
            completion, written with one write(2) on an O_APPEND file, so lines from several
            processes never interleave) and returns {"ok": true}.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "python-worker"))

import worker  # noqa: E402  (found through the path above)

DONE = os.environ.get("JOBMESH_TEST_DONE_FILE", "")
STARTED = os.environ.get("JOBMESH_TEST_STARTED_FILE", "")


def note(path, job_id):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (job_id + "\n").encode())
    finally:
        os.close(fd)


@worker.handler("py.sleep")
def sleep(ctx):
    if STARTED:
        note(STARTED, ctx.id)
    time.sleep(float(ctx.data.get("ms", 20)) / 1000)
    if DONE:
        note(DONE, ctx.id)
    return {"ok": True}


if __name__ == "__main__":
    sys.exit(worker.main())
