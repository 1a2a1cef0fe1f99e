"""A Python gRPC client of DeadLetterService (and SchedulerService), run by
python-dead-letters.int.test.ts.

Usage: python3 python_dead_letters.py <scheduler address> <dead-letter address> <queue> <stubdir>

<stubdir> holds the stubs protoc and grpc_python_plugin generated from proto/. The workers behind
the scheduler run `fatal` jobs: they throw UnrecoverableError unless the job's data has
`fixed: true`. The script creates <queue>, enqueues a `fatal` job, waits for its dead letter, reads
it, quarantines it, is refused a replay, releases it, replays it with a data patch that fixes it,
waits for the new job to complete, reads the dead letter's replay, replays it again as a stream
(StreamReplayDeadLetters: the dead letter's idempotency key gives the same job back), is refused a
purge naming an unknown id beside it (all or nothing), and reads the queue's stats.
It prints one JSON line with what it saw and the checks it made, and exits 0 only when every
check passed (1 when one failed or a call raised, 2 on bad usage).
"""

import json
import sys
import time
import traceback

TIMEOUT_S = 10
# How long to poll for the dead letter to be captured and for the replayed job to complete.
WAIT_S = 20
POLL_S = 0.1
DATA = {"order": 7}
PATCH = {"fixed": True}


def main(argv):
    if len(argv) != 5:
        print(
            "usage: python3 python_dead_letters.py <scheduler address> <dead-letter address> <queue> <stubdir>",
            file=sys.stderr,
        )
        return 2
    scheduler_address, dlq_address, queue, stubdir = argv[1:]
    sys.path.insert(0, stubdir)

    import grpc
    from google.protobuf import json_format, struct_pb2
    from jobmesh.v1 import dead_letter_service_pb2 as dlq, dead_letter_service_pb2_grpc as dlq_grpc
    from jobmesh.v1 import job_pb2, queue_pb2, scheduler_service_pb2 as svc, scheduler_service_pb2_grpc as svc_grpc

    result = {"grpcio": grpc.__version__, "queue": queue, "checks": {}}
    checks = result["checks"]

    def connect(address):
        # A proxy from the environment must not catch a call to 127.0.0.1.
        channel = grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)])
        try:
            grpc.channel_ready_future(channel).result(timeout=TIMEOUT_S)
        except grpc.FutureTimeoutError:
            channel.close()
            raise ConnectionError("no connection to %s within %d s" % (address, TIMEOUT_S)) from None
        return channel

    def poll(what, probe):
        """Calls probe() until it returns something truthy; raises after WAIT_S."""
        deadline = time.monotonic() + WAIT_S
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError("timed out after %d s waiting for %s" % (WAIT_S, what))
            time.sleep(POLL_S)

    def struct(d):
        s = struct_pb2.Struct()
        s.update(d)
        return s

    def state_name(job):
        return job_pb2.JobState.Name(job.state)

    try:
        with connect(scheduler_address) as sched_channel, connect(dlq_address) as dlq_channel:
            scheduler = svc_grpc.SchedulerServiceStub(sched_channel)
            dead_letters = dlq_grpc.DeadLetterServiceStub(dlq_channel)

            created = scheduler.CreateQueue(
                svc.CreateQueueRequest(queue=queue_pb2.QueueConfig(name=queue)), timeout=TIMEOUT_S
            )
            checks["queue_created"] = created.queue.name == queue

            original = scheduler.EnqueueJob(
                svc.EnqueueJobRequest(queue=queue, job=svc.JobSpec(name="fatal", data=struct(DATA))),
                timeout=TIMEOUT_S,
            ).job
            result["original_id"] = original.id
            checks["enqueue_returned_id"] = bool(original.id)

            # The dead letter appears once the job failed and the service captured it.
            listed = poll(
                "the dead letter of job %s in ListDeadLetters" % original.id,
                lambda: [
                    d
                    for d in dead_letters.ListDeadLetters(
                        dlq.ListDeadLettersRequest(filter=dlq.DeadLetterFilter(queue=queue)), timeout=TIMEOUT_S
                    ).dead_letters
                    if d.job.id == original.id
                ],
            )
            dl_id = listed[0].id
            result["dead_letter_id"] = dl_id
            checks["listed_once"] = len(listed) == 1

            dl = dead_letters.GetDeadLetter(dlq.GetDeadLetterRequest(id=dl_id), timeout=TIMEOUT_S).dead_letter
            result["dead_letter"] = {
                "id": dl.id,
                "job": {"id": dl.job.id, "queue": dl.job.queue, "name": dl.job.name, "data": json_format.MessageToDict(dl.job.data)},
                "category": dl.category,
                "severity": queue_pb2.Severity.Name(dl.severity),
                "errors": [{"attempt": e.attempt, "error_name": e.error_name, "message": e.message} for e in dl.errors],
                "quarantined": dl.quarantined,
                "replays": len(dl.replays),
            }
            checks["dead_letter_job"] = dl.job.id == original.id and dl.job.queue == queue and dl.job.name == "fatal"
            checks["category_unrecoverable"] = dl.category == "UNRECOVERABLE"
            checks["severity_warning"] = dl.severity == queue_pb2.SEVERITY_WARNING
            checks["one_unrecoverable_error"] = len(dl.errors) == 1 and dl.errors[0].error_name == "UnrecoverableError"

            job = scheduler.GetJob(svc.GetJobRequest(queue=queue, id=original.id), timeout=TIMEOUT_S).job
            result["original_state"] = state_name(job)
            checks["original_dead_lettered"] = job.state == job_pb2.JOB_STATE_DEAD_LETTERED

            quarantined = dead_letters.QuarantineDeadLetters(
                dlq.QuarantineDeadLettersRequest(ids=[dl_id], quarantined=True, reason="python interop"),
                timeout=TIMEOUT_S,
            )
            result["quarantine_updated"] = quarantined.updated
            checks["quarantined"] = quarantined.updated == 1

            try:
                refused = dead_letters.ReplayDeadLetters(dlq.ReplayDeadLettersRequest(ids=[dl_id]), timeout=TIMEOUT_S)
                result["quarantined_replay"] = {"code": "OK", "replayed": len(refused.replayed)}
            except grpc.RpcError as err:
                result["quarantined_replay"] = {"code": err.code().name, "details": err.details()}
            checks["quarantined_replay_refused"] = (
                result["quarantined_replay"]["code"] == grpc.StatusCode.FAILED_PRECONDITION.name
            )

            released = dead_letters.QuarantineDeadLetters(
                dlq.QuarantineDeadLettersRequest(ids=[dl_id], quarantined=False), timeout=TIMEOUT_S
            )
            result["release_updated"] = released.updated
            checks["released"] = released.updated == 1

            replay = dead_letters.ReplayDeadLetters(
                dlq.ReplayDeadLettersRequest(ids=[dl_id], data_patch=struct(PATCH)), timeout=TIMEOUT_S
            )
            result["replayed"] = [{"dead_letter_id": r.dead_letter_id, "queue": r.job.queue, "id": r.job.id} for r in replay.replayed]
            checks["replayed_one"] = (
                len(replay.replayed) == 1
                and replay.replayed[0].dead_letter_id == dl_id
                and replay.replayed[0].job.queue == queue
                and bool(replay.replayed[0].job.id)
                and replay.replayed[0].job.id != original.id
            )
            new_id = replay.replayed[0].job.id

            def completed():
                j = scheduler.GetJob(svc.GetJobRequest(queue=queue, id=new_id), timeout=TIMEOUT_S).job
                return j if j.state == job_pb2.JOB_STATE_COMPLETED else None

            new_job = poll("replayed job %s to complete" % new_id, completed)
            result["new_job"] = {
                "id": new_job.id,
                "name": new_job.name,
                "state": state_name(new_job),
                "data": json_format.MessageToDict(new_job.data),
                "replay_of": new_job.options.replay_of,
                "result": json_format.MessageToDict(new_job.result),
            }
            checks["new_job_completed"] = new_job.state == job_pb2.JOB_STATE_COMPLETED
            checks["new_job_data_patched"] = result["new_job"]["data"] == {**DATA, **PATCH}
            checks["new_job_replay_of"] = new_job.options.replay_of == dl_id

            after = dead_letters.GetDeadLetter(dlq.GetDeadLetterRequest(id=dl_id), timeout=TIMEOUT_S).dead_letter
            result["replays"] = [{"queue": r.job.queue, "id": r.job.id} for r in after.replays]
            checks["replay_recorded"] = (
                len(after.replays) == 1 and after.replays[0].job.id == new_id and after.replays[0].job.queue == queue
            )

            # Again, as a stream: progress messages, and the job made before rather than a second one.
            messages = list(
                dead_letters.StreamReplayDeadLetters(
                    dlq.StreamReplayDeadLettersRequest(replay=dlq.ReplayDeadLettersRequest(ids=[dl_id])), timeout=TIMEOUT_S
                )
            )
            streamed = [r for m in messages for r in m.replayed]
            result["stream"] = {
                "messages": len(messages),
                "replayed": [{"id": r.job.id, "deduplicated": r.deduplicated} for r in streamed],
                "last": json_format.MessageToDict(messages[-1].progress) if messages else None,
            }
            checks["stream_total_first"] = bool(messages) and messages[0].progress.total == 1 and messages[0].progress.examined == 0
            checks["stream_same_job"] = len(streamed) == 1 and streamed[0].job.id == new_id and streamed[0].deduplicated
            checks["stream_final_counts"] = bool(messages) and messages[-1].progress.replayed == 1 and messages[-1].progress.examined == 1

            # All or nothing: an unknown id beside it, and nothing is purged.
            unknown = "%s:nope:1" % queue
            try:
                dead_letters.PurgeDeadLetters(dlq.PurgeDeadLettersRequest(ids=[dl_id, unknown]), timeout=TIMEOUT_S)
                result["mixed_purge"] = {"code": "OK"}
            except grpc.RpcError as err:
                result["mixed_purge"] = {"code": err.code().name, "details": err.details()}
            checks["mixed_purge_not_found"] = result["mixed_purge"] == {
                "code": grpc.StatusCode.NOT_FOUND.name,
                "details": 'dead letter "%s" not found' % unknown,
            }

            stats = dead_letters.GetDeadLetterStats(dlq.GetDeadLetterStatsRequest(queue=queue), timeout=TIMEOUT_S)
            result["stats"] = {
                "total": stats.total,
                "counts": [{"queue": c.queue, "category": c.category, "count": c.count} for c in stats.counts],
            }
            checks["stats_total_one"] = stats.total == 1
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
