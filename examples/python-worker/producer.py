#!/usr/bin/env python3
"""A Jobmesh producer in Python over the SchedulerService EnqueueStream.

Usage:
  python3 producer.py --queue demo --count 10000 --name resize [--address 127.0.0.1:50051]
                      [--window 1000] [--batch 500] [--key-prefix run1-] [--traceparent TP]
                      [--jobs FILE|-] [--api-key KEY] [--reconnects 5] [--stubs DIR] [--json]
                      [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]

Generates `--count` jobs named `--name` with data {"i": <n>} (keyed "<key-prefix><n>" when
--key-prefix is given), or reads them from `--jobs`, one JSON object a line:
  {"name": "resize", "data": {...}, "queue": "demo", "options": {"idempotencyKey": "k1"},
   "traceparent": "00-<trace id>-<span id>-01"}
(`queue` defaults to --queue; `options` is a JobOptions in protobuf JSON, snake_case or camelCase).
Each job not enqueued (refused, unknown, unsent) is a line on stderr; the summary is one line on stdout (a JSON object with --json).
Exit code 0 when every job was answered (enqueued or refused), 1 when some are unknown or unsent
or the producer gave up, 2 on bad usage. Environment twins: JOBMESH_ADDRESS, JOBMESH_API_KEY, JOBMESH_STUBS,
JOBMESH_TLS=1, JOBMESH_TLS_CA, JOBMESH_TLS_CLIENT_CERT, JOBMESH_TLS_CLIENT_KEY (TLS trusts --tls-ca, else
the system's roots, and presents --tls-cert for mTLS).

The stream's rules (proto/jobmesh/v1/scheduler_service.proto, EnqueueStream), as this producer
follows them:
- every job carries a `seq` greater than the one before it on the stream; its acknowledgement
  carries the same `seq`, and acknowledgements come in the order the jobs were sent, so the
  producer matches each to the oldest unanswered job;
- at most `window` jobs are sent and unanswered; `submit()` blocks while that many are pending,
  and jobs that are ready together go out in one message, at most `batch` of them;
- a bad job is answered with an error (code, message, field) and the stream goes on; an error
  UNAVAILABLE (Redis unreachable) leaves the job unknown, as a unary call's would;
- half-closing ends the stream once every job is answered;
- a stream that breaks leaves its unanswered jobs unknown, enqueued or not: those with an
  idempotency key or a job id are sent again on a new stream (the server answers a repeat
  `deduplicated`); the others are reported `unknown`, never sent twice. A stream the server ends
  itself (status OK, when it shuts down) has answered every job it read, so its unanswered jobs
  were not enqueued and all of them go on a new stream.
"""

import argparse
import collections
import itertools
import json
import os
import sys
import threading
import time

from jobmesh_tls import add_tls_arguments, open_channel, read_tls  # next to this file

HERE = os.path.dirname(os.path.abspath(__file__))

# Stream statuses a new stream would meet again: the producer gives up at once.
FATAL = ("UNAUTHENTICATED", "PERMISSION_DENIED", "UNIMPLEMENTED", "INVALID_ARGUMENT")
# How long to wait for a connection before a stream is opened; a wait that runs out counts as a
# broken stream (see --reconnects).
CONNECT_TIMEOUT_S = 5


class ProducerFailed(Exception):
    """The producer gave up (a refusal for good, or too many broken streams in a row)."""


class Job:
    """One job to enqueue. `options` is a JobOptions message, a dict in protobuf JSON, or None."""

    def __init__(self, queue, name, data=None, options=None, traceparent="", idempotency_key="", job_id="", index=None):
        self.queue = queue
        self.name = name
        self.data = data
        self.options = options
        self.traceparent = traceparent or ""
        self.idempotency_key = idempotency_key
        self.job_id = job_id
        self.index = index  # the caller's number for it (the input line), for reports
        self.message = None  # its StreamedJob, built once by Producer.submit
        self.sent = False  # sent on some stream at least once

    @property
    def keyed(self):
        """Safe to send again: a repeat finds the job the first one wrote."""
        return bool(self.message.job.options.idempotency_key or self.message.job.options.job_id)


class Outcome:
    """What became of one job: "enqueued" (also when deduplicated), "refused" (the server's error
    for it: a gRPC code name, message and field; nothing was stored), "unknown" (it may or may not
    be stored: its stream broke before it was answered, or it was answered UNAVAILABLE) or
    "unsent" (the producer gave up before sending it)."""

    __slots__ = ("kind", "job", "seq", "id", "deduplicated", "code", "message", "field", "facts")

    def __init__(self, kind, job, seq=0, id="", deduplicated=False, code="", message="", field="", facts=None):
        self.kind, self.job, self.seq, self.id, self.deduplicated = kind, job, seq, id, deduplicated
        self.code, self.message, self.field, self.facts = code, message, field, facts

    def as_dict(self):
        d = {"kind": self.kind, "seq": self.seq, "queue": self.job.queue, "name": self.job.name}
        if self.job.index is not None:
            d["index"] = self.job.index
        if self.kind == "enqueued":
            d.update(id=self.id, deduplicated=self.deduplicated)
        elif self.code:
            d.update(code=self.code, message=self.message, field=self.field)
            if self.facts:
                d["facts"] = self.facts
        return d


class Summary:
    def __init__(self):
        self.enqueued = 0
        self.deduplicated = 0
        self.refused = []  # Outcome, kind "refused"
        self.unknown = 0
        self.unsent = 0
        self.streams = 0  # streams opened
        self.seconds = 0.0
        self.error = None  # why the producer gave up

    @property
    def answered(self):
        return self.enqueued + len(self.refused)

    @property
    def jobs_per_s(self):
        """Jobs answered (enqueued or refused) per second, first submit to last answer."""
        return self.answered / self.seconds if self.seconds > 0 else 0.0

    def line(self):
        s = "enqueued %d (%d deduplicated), refused %d, unknown %d, unsent %d in %.3f s: %.0f jobs/s" % (
            self.enqueued, self.deduplicated, len(self.refused), self.unknown, self.unsent, self.seconds, self.jobs_per_s)
        return s + ("; gave up: %s" % self.error if self.error else "")

    def as_dict(self):
        return {
            "enqueued": self.enqueued, "deduplicated": self.deduplicated, "refused": len(self.refused),
            "unknown": self.unknown, "unsent": self.unsent, "streams": self.streams,
            "seconds": round(self.seconds, 4), "jobs_per_s": round(self.jobs_per_s, 1), "error": self.error,
            "refusals": [o.as_dict() for o in self.refused],
        }


class Producer:
    """Enqueues jobs over one EnqueueStream at a time, reopened when it breaks.

        p = Producer("127.0.0.1:50051", window=1000)
        p.start()
        for job in jobs:
            p.submit(job)          # blocks while `window` jobs are unanswered
        summary = p.close()        # waits for every answer

    `on_outcome(outcome)`, if given, is called for every job, on the producer's stream thread.
    """

    def __init__(self, address, api_key=None, window=1000, batch=500, reconnects=5, on_outcome=None, log=None, tls=None):
        import grpc
        from google.protobuf import json_format
        from jobmesh.v1 import scheduler_service_pb2 as svc, scheduler_service_pb2_grpc as svc_grpc

        self.grpc, self.json_format, self.svc = grpc, json_format, svc
        self.window = max(1, window)
        self.batch = max(1, batch)
        self.reconnects = reconnects
        self.on_outcome = on_outcome
        self.log = log or (lambda m: print("[producer] %s" % m, file=sys.stderr, flush=True))
        self.address = address
        self.metadata = (("authorization", "Bearer " + api_key),) if api_key else ()
        # A proxy from the environment must not catch a call to 127.0.0.1. Acknowledgements ready
        # together come in one message, which may pass grpcio's default limit of 4 MiB.
        # Keepalive while the stream is open: a connection that answers no ping within 5 s of one
        # (a blackholed route) is closed, and the stream reconnects instead of waiting forever.
        self.channel = open_channel(grpc, address, [
            ("grpc.enable_http_proxy", 0), ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.http2.max_pings_without_data", 0)], tls)
        self.stub = svc_grpc.SchedulerServiceStub(self.channel)
        self.summary = Summary()

        lock = threading.Lock()
        self._lock = lock
        self._work = threading.Condition(lock)  # jobs to send, room in the window, closing, a new stream
        self._room = threading.Condition(lock)  # pending went below the window, or the producer gave up
        self._waiting = collections.deque()  # Job, to send on the current stream
        self._unanswered = collections.deque()  # (seq, Job), sent on the current stream, in order
        self._seq = itertools.count(1)  # one count for every stream: a seq is never used twice
        self._stream = 0  # the current stream's number; a generator of an older one stops
        self._closing = False
        self._failed = None
        self._stop = threading.Event()  # cuts a reconnect backoff short when the producer gives up
        self._thread = None
        self._started = None
        self._last_answer = None

    # ------------------------------------------------------------ the caller's side

    def start(self):
        self._thread = threading.Thread(target=self._run, name="enqueue-stream", daemon=True)
        self._thread.start()
        return self

    def submit(self, job):
        """Queues `job` for the stream; blocks while `window` jobs are pending (flow control).
        Raises ProducerFailed once the producer gave up."""
        job.message = self._streamed(job)
        with self._lock:
            while self._failed is None and len(self._waiting) + len(self._unanswered) >= self.window:
                self._room.wait()
            if self._failed is not None:
                raise ProducerFailed(self._failed)
            if self._closing:
                raise ProducerFailed("the producer is closed")
            if self._started is None:
                self._started = time.monotonic()
            self._waiting.append(job)
            self._work.notify()

    def close(self):
        """Half-closes the stream once every job is sent, waits for every answer; the summary."""
        with self._lock:
            self._closing = True
            self._work.notify_all()
        if self._thread:
            self._thread.join()
        self.channel.close()
        s = self.summary
        if self._started is not None:
            s.seconds = (self._last_answer or time.monotonic()) - self._started
        return s

    def _streamed(self, job):
        spec = self.svc.JobSpec(name=job.name)
        if job.data is not None:
            spec.data.update(job.data)
        if isinstance(job.options, dict):
            self.json_format.ParseDict(job.options, spec.options)
        elif job.options is not None:
            spec.options.CopyFrom(job.options)
        if job.idempotency_key:
            spec.options.idempotency_key = job.idempotency_key
        if job.job_id:
            spec.options.job_id = job.job_id
        return self.svc.StreamedJob(queue=job.queue, job=spec, traceparent=job.traceparent)

    # ------------------------------------------------------------ the stream's side

    def _requests(self, stream):
        """The request messages of stream number `stream`: what is waiting, as far as the window
        allows, `batch` at most a message. Returns (half-closes) once closing with nothing left."""
        while True:
            with self._lock:
                while (stream == self._stream and self._failed is None
                       and (not self._waiting or len(self._unanswered) >= self.window)
                       and not (self._closing and not self._waiting)):
                    self._work.wait()
                if stream != self._stream or self._failed is not None or not self._waiting:
                    return
                n = min(self.batch, self.window - len(self._unanswered), len(self._waiting))
                req = self.svc.EnqueueStreamRequest()
                for _ in range(n):
                    job = self._waiting.popleft()
                    seq = next(self._seq)
                    job.message.seq = seq
                    job.sent = True
                    self._unanswered.append((seq, job))
                    req.jobs.append(job.message)
            yield req

    def _run(self):
        """Opens streams while there is something to send, until closed and all answered or given up."""
        failures = 0
        backoff = 0.2
        while True:
            with self._lock:
                # Open a stream only when there is something to send.
                while not self._waiting and not self._closing:
                    self._work.wait()
                if not self._waiting:
                    return
            # A stream opened before the channel is up would take jobs and fail, leaving them
            # unknown: wait for the connection first, and count a failure without them.
            try:
                self.grpc.channel_ready_future(self.channel).result(timeout=CONNECT_TIMEOUT_S)
            except self.grpc.FutureTimeoutError:
                failures += 1
                self.log("no connection to %s within %d s (%d of %d)" % (self.address, CONNECT_TIMEOUT_S, failures, self.reconnects + 1))
                if failures > self.reconnects:
                    return self._give_up("no connection to %s" % self.address)
                continue
            with self._lock:
                self._stream += 1
                stream = self._stream
            self.summary.streams += 1
            heard, error = self._one_stream(stream)
            with self._lock:
                self._stream += 1  # that stream's generator, if still waiting, stops
                self._work.notify_all()
                left = [job for _, job in self._unanswered]
                self._unanswered.clear()
                if error is None:
                    # Ended by the server with OK: it answered every job it read, so it did not
                    # read these. Every one of them goes again.
                    resend, lost = left, []
                else:
                    resend, lost = [j for j in left if j.keyed], [j for j in left if not j.keyed]
                self._waiting.extendleft(reversed(resend))
            for job in lost:
                self._report(Outcome("unknown", job, seq=job.message.seq, code=error[0], message=error[1]))
            if left or error:
                self.log("stream %d ended (%s) with %d jobs unanswered: %d to send again, %d unknown" % (
                    stream, "%s: %s" % error if error else "OK", len(left), len(resend), len(lost)))
            if heard:
                failures, backoff = 0, 0.2
            elif error or left:
                failures += 1
            if error and error[0] in FATAL:
                return self._give_up("%s: %s" % error)
            if failures > self.reconnects:
                return self._give_up("%d streams in a row ended without an answer (last: %s)" % (
                    failures, "%s: %s" % error if error else "OK"))
            if error:
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, 5.0)

    def _one_stream(self, stream):
        """Runs one stream to its end: (whether it answered any job, None or (code name, details))."""
        call = self.stub.EnqueueStream(self._requests(stream), metadata=self.metadata)
        heard = False
        try:
            for res in call:
                answered = []
                with self._lock:
                    for ack in res.acks:
                        # In order: each acknowledgement answers the oldest unanswered job.
                        if not self._unanswered or self._unanswered[0][0] != ack.seq:
                            expected = self._unanswered[0][0] if self._unanswered else None
                            raise _OutOfOrder("an acknowledgement for seq %d, expected %s" % (ack.seq, expected))
                        answered.append((self._unanswered.popleft()[1], ack))
                    if answered:
                        heard = True
                        self._last_answer = time.monotonic()
                        self._work.notify()
                        self._room.notify_all()
                for job, ack in answered:
                    self._report(self._outcome(job, ack))
            return heard, None
        except self.grpc.RpcError as err:
            return heard, (err.code().name, err.details() or "")
        except _OutOfOrder as err:
            call.cancel()
            return heard, ("INTERNAL", str(err))

    def _outcome(self, job, ack):
        if ack.WhichOneof("outcome") == "error":
            e = ack.error
            code = self.grpc.StatusCode
            name = next((c.name for c in code if c.value[0] == e.code), str(e.code))
            facts = json.loads(e.error_facts.decode()) if e.error_facts else None
            # UNAVAILABLE (Redis unreachable) does not say that nothing was stored: the write may
            # have reached Redis before its answer was lost, as with a unary EnqueueJob.
            kind = "unknown" if name == "UNAVAILABLE" else "refused"
            return Outcome(kind, job, seq=ack.seq, code=name, message=e.message, field=e.field, facts=facts)
        return Outcome("enqueued", job, seq=ack.seq, id=ack.enqueued.job.id, deduplicated=ack.enqueued.deduplicated)

    def _report(self, o):
        s = self.summary
        if o.kind == "enqueued":
            s.enqueued += 1
            s.deduplicated += o.deduplicated
        elif o.kind == "refused":
            s.refused.append(o)
        elif o.kind == "unknown":
            s.unknown += 1
        else:
            s.unsent += 1
        if self.on_outcome:
            self.on_outcome(o)

    def _give_up(self, why):
        self.log("giving up: %s" % why)
        with self._lock:
            self._failed = why
            self._stream += 1
            left = list(self._waiting)
            self._waiting.clear()
            self._work.notify_all()
            self._room.notify_all()
        self.summary.error = why
        for job in left:
            # A keyed job sent on a broken stream may be stored; one never sent is not.
            self._report(Outcome("unknown" if job.sent else "unsent", job, code="", message=why))
        self._stop.set()


class _OutOfOrder(Exception):
    """An acknowledgement that does not answer the oldest unanswered job: a server bug."""


# ---------------------------------------------------------------- CLI


def generated(args):
    for i in range(args.count):
        key = "%s%d" % (args.key_prefix, i) if args.key_prefix else ""
        yield Job(args.queue, args.name, {"i": i}, traceparent=args.traceparent, idempotency_key=key, index=i)


def from_lines(args, lines):
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        d = json.loads(line)
        yield Job(d.get("queue") or args.queue, d.get("name", ""), d.get("data"), options=d.get("options"),
                  traceparent=d.get("traceparent") or args.traceparent, index=i)


def report(o):
    """One stderr line for each job not enqueued."""
    if o.kind == "enqueued":
        return
    where = "seq %d " % o.seq if o.seq else ""
    why = "%s%s: %s" % (o.code, " field %s" % o.field if o.field else "", o.message) if o.code else o.message
    print("%s %s(job %s %r on %s): %s" % (o.kind, where, o.job.index, o.job.name, o.job.queue, why), file=sys.stderr)


def main(argv=None):
    env = os.environ
    p = argparse.ArgumentParser(description="A Jobmesh producer in Python (SchedulerService.EnqueueStream).")
    p.add_argument("--address", default=env.get("JOBMESH_ADDRESS", "127.0.0.1:50051"))
    p.add_argument("--queue", default="", help="the queue of generated jobs, and of --jobs lines without one")
    p.add_argument("--count", type=int, default=1000, help="how many jobs to generate (without --jobs)")
    p.add_argument("--name", default="echo", help="the name of generated jobs")
    p.add_argument("--jobs", help="read jobs from this file, one JSON object a line ('-': stdin)")
    p.add_argument("--window", type=int, default=1000, help="at most this many jobs sent and unanswered")
    p.add_argument("--batch", type=int, default=500, help="at most this many jobs in one message")
    p.add_argument("--key-prefix", default="", help="give generated job n the idempotency key <prefix><n>")
    p.add_argument("--traceparent", default="", help="W3C traceparent of every job that has none of its own")
    p.add_argument("--api-key", default=env.get("JOBMESH_API_KEY", ""), help="sent as authorization: Bearer <key>")
    p.add_argument("--reconnects", type=int, default=5, help="give up after this many broken streams in a row without an answer")
    p.add_argument("--stubs", default=env.get("JOBMESH_STUBS", os.path.join(HERE, "gen")))
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_tls_arguments(p, env)
    args = p.parse_args(argv)
    tls = read_tls(p, args)
    if not args.jobs and not args.queue:
        p.error("--queue is required without --jobs")
    if os.path.isdir(args.stubs):
        sys.path.insert(0, args.stubs)

    producer = Producer(args.address, api_key=args.api_key or None, window=args.window, batch=args.batch,
                        reconnects=args.reconnects, on_outcome=report, tls=tls).start()
    source = open(args.jobs) if args.jobs and args.jobs != "-" else sys.stdin
    try:
        jobs = from_lines(args, source) if args.jobs else generated(args)
        for job in jobs:
            producer.submit(job)
    except ProducerFailed:
        pass  # in the summary
    finally:
        if source is not sys.stdin:
            source.close()
    summary = producer.close()
    print(json.dumps(summary.as_dict(), sort_keys=True) if args.json else summary.line(), flush=True)
    # 0 only when every job was answered, enqueued or refused: nothing is left in doubt.
    return 1 if summary.error or summary.unknown or summary.unsent else 0


if __name__ == "__main__":
    sys.exit(main())
