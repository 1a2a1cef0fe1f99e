"""A Python gRPC client of SchedulerService, run by python.int.test.ts.

Usage: python3 python_client.py <address> <queue> <stubdir>

<stubdir> holds the stubs protoc and grpc_python_plugin generated from proto/. The script creates
<queue>, enqueues a job on it, reads the job back, and enqueues on a queue that does not exist.
It prints one JSON line with what it saw and the checks it made, and exits 0 only when every
check passed (1 when one failed or a call raised, 2 on bad usage).
"""

import json
import sys
import traceback

TIMEOUT_S = 10
DATA = {"hello": "world"}


def main(argv):
    if len(argv) != 4:
        print("usage: python3 python_client.py <address> <queue> <stubdir>", file=sys.stderr)
        return 2
    address, queue, stubdir = argv[1:]
    sys.path.insert(0, stubdir)

    import grpc
    from google.protobuf import json_format, struct_pb2
    from jobmesh.v1 import job_pb2, queue_pb2, scheduler_service_pb2 as svc, scheduler_service_pb2_grpc as svc_grpc

    result = {"grpcio": grpc.__version__, "queue": queue, "checks": {}}
    checks = result["checks"]
    try:
        # A proxy from the environment must not catch a call to 127.0.0.1.
        with grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=TIMEOUT_S)
            except grpc.FutureTimeoutError:
                raise ConnectionError("no connection to %s within %d s" % (address, TIMEOUT_S)) from None
            stub = svc_grpc.SchedulerServiceStub(channel)

            created = stub.CreateQueue(
                svc.CreateQueueRequest(queue=queue_pb2.QueueConfig(name=queue)), timeout=TIMEOUT_S
            )
            result["created_queue"] = created.queue.name
            checks["queue_created"] = created.queue.name == queue

            data = struct_pb2.Struct()
            data.update(DATA)
            enqueued = stub.EnqueueJob(
                svc.EnqueueJobRequest(queue=queue, job=svc.JobSpec(name="py.hello", data=data)),
                timeout=TIMEOUT_S,
            ).job
            result["enqueued_id"] = enqueued.id
            checks["enqueue_returned_id"] = bool(enqueued.id)

            job = stub.GetJob(svc.GetJobRequest(queue=queue, id=enqueued.id), timeout=TIMEOUT_S).job
            result["job"] = {
                "id": job.id,
                "queue": job.queue,
                "name": job.name,
                "data": json_format.MessageToDict(job.data),
                "state": job_pb2.JobState.Name(job.state),
            }
            checks["id"] = job.id == enqueued.id
            checks["name"] = job.name == "py.hello"
            checks["data"] = result["job"]["data"] == DATA
            checks["state_waiting"] = job.state == job_pb2.JOB_STATE_WAITING

            unknown = queue + "-unknown"
            try:
                stub.EnqueueJob(
                    svc.EnqueueJobRequest(queue=unknown, job=svc.JobSpec(name="py.hello", data=data)),
                    timeout=TIMEOUT_S,
                )
                result["unknown_queue"] = {"code": "OK", "details": ""}
            except grpc.RpcError as err:
                result["unknown_queue"] = {"code": err.code().name, "details": err.details()}
            checks["unknown_queue_not_found"] = result["unknown_queue"]["code"] == grpc.StatusCode.NOT_FOUND.name
    except Exception as err:  # reported in the JSON line, so the test shows it
        result["error"] = "".join(traceback.format_exception_only(type(err), err)).strip()
        if isinstance(err, grpc.RpcError):
            result["error"] = "%s: %s" % (err.code().name, err.details())
        result["traceback"] = traceback.format_exc()

    result["ok"] = "error" not in result and bool(checks) and all(checks.values())
    print(json.dumps(result, sort_keys=True))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
