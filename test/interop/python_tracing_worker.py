"""The example Python worker (examples/python-worker/worker.py) with one more handler, run by
python-tracing.int.test.ts. Takes the example's flags and environment.

  flaky  fails attempts 1 and 2 (RuntimeError, retryable), and returns {"attempt": 3} on the third:
         the same job as the test's in-process processor (test/system/fixtures/flaky-processor.js).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "python-worker"))

import worker  # noqa: E402  (found through the path above)


@worker.handler("flaky")
def flaky(ctx):
    if ctx.attempt < 3:
        raise RuntimeError("failing attempt %d on purpose" % ctx.attempt)
    return {"attempt": ctx.attempt}


if __name__ == "__main__":
    sys.exit(worker.main())
