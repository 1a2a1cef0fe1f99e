"""A Python producer that starts a trace by hand, run by python-tracing.int.test.ts.

Usage: python3 python_tracing_client.py <address> <queue> <stubdir> <job name> <attempts> <backoff ms>

Like a service with no OpenTelemetry SDK that still propagates its context: it makes up a trace id
and a span id of its own and sends EnqueueJob with the metadata `traceparent:
00-<trace id>-<span id>-01`, for a job with <attempts> attempts and a fixed backoff. It prints one
JSON line (trace_id, span_id, job_id, and the job's trace_id as the scheduler answered it) and
exits 0, or prints {"error": ...} and exits 1 (2 on bad usage).
"""

import json
import os
import sys
import traceback

TIMEOUT_S = 10


def main(argv):
    if len(argv) != 7:
        print("usage: python3 python_tracing_client.py <address> <queue> <stubdir> <job name> <attempts> <backoff ms>", file=sys.stderr)
        return 2
    address, queue, stubdir, name, attempts, backoff_ms = argv[1:]
    sys.path.insert(0, stubdir)

    import grpc
    from google.protobuf import duration_pb2
    from jobmesh.v1 import job_pb2, scheduler_service_pb2 as svc, scheduler_service_pb2_grpc as svc_grpc

    # Random ids are all-zero with probability 2^-128 and 2^-64: not worth a loop.
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    result = {"trace_id": trace_id, "span_id": span_id}
    try:
        with grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
            stub = svc_grpc.SchedulerServiceStub(channel)
            delay = duration_pb2.Duration()
            delay.FromMilliseconds(int(backoff_ms))
            options = job_pb2.JobOptions(attempts=int(attempts), backoff=job_pb2.Backoff(kind=job_pb2.BACKOFF_KIND_FIXED, delay=delay))
            job = stub.EnqueueJob(
                svc.EnqueueJobRequest(queue=queue, job=svc.JobSpec(name=name, options=options)),
                metadata=(("traceparent", "00-%s-%s-01" % (trace_id, span_id)),),
                timeout=TIMEOUT_S,
                wait_for_ready=True,
            ).job
            result["job_id"] = job.id
            result["job_trace_id"] = job.trace_id
    except Exception as err:  # reported in the JSON line, so the test shows it
        result["error"] = "".join(traceback.format_exception_only(type(err), err)).strip()
        if isinstance(err, grpc.RpcError):
            result["error"] = "%s: %s" % (err.code().name, err.details())
    print(json.dumps(result, sort_keys=True))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
