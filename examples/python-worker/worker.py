#!/usr/bin/env python3
"""A Jobmesh worker in Python over the WorkerService Connect stream.

Usage:
  python3 worker.py --queues demo [--address 127.0.0.1:50051] [--names echo,sum]
                    [--concurrency 4] [--worker-id ID] [--stubs DIR] [--exit-on-drain]
                    [--shutdown-grace 10s] [--api-key KEY] [--tls] [--tls-ca FILE]
                    [--tls-cert FILE --tls-key FILE] [--keepalive 10s] [--keepalive-timeout 5s]

Every flag has an environment twin: JOBMESH_ADDRESS, JOBMESH_QUEUES (comma-separated),
JOBMESH_JOB_NAMES, JOBMESH_CONCURRENCY, JOBMESH_WORKER_ID, JOBMESH_STUBS, JOBMESH_EXIT_ON_DRAIN=1,
JOBMESH_SHUTDOWN_GRACE, JOBMESH_API_KEY, JOBMESH_TLS=1, JOBMESH_TLS_CA, JOBMESH_TLS_CLIENT_CERT,
JOBMESH_TLS_CLIENT_KEY, JOBMESH_KEEPALIVE_INTERVAL, JOBMESH_KEEPALIVE_TIMEOUT. The API key is sent as `authorization: Bearer <key>` on the Connect stream;
TLS trusts --tls-ca (else the system's roots) and presents --tls-cert for mTLS.
The stubs come from gen_stubs.sh (default folder: ./gen next to this file, or PYTHONPATH).

Protocol (proto/jobmesh/v1/worker_service.proto): Hello first, the server answers Welcome with the
lease TTL and heartbeat interval; the worker keeps `concurrency` credits outstanding, runs each
Assignment on a thread pool, heartbeats the leases it holds, and answers Complete or Fail with the
lease token. ctx.step() saves a step's result on the server (SaveStep), so a retry resumes at the
step that failed; ctx.run_children() adds child jobs (AddChildren) and the job runs again once they
completed; ctx.children_results() reads their results. Cancel sets the job's `cancelled` event.
Drain stops asking for work; once the jobs in hand are done the worker closes the stream and
reconnects (to another replica), or exits with --exit-on-drain. SIGTERM (or SIGINT) stops the
same way, waiting up to --shutdown-grace, then exits; a second signal exits at once. A dropped
stream (also one found dead by the keepalive: no answer to a ping within --keepalive-timeout) is
reconnected with exponential backoff; jobs that were in hand went back to waiting on
the server, so their late results are dropped. A refusal for good (bad credentials, unknown queue, refused Hello) ends the
process with exit code 2 instead.

Tracing without an OpenTelemetry SDK: when an Assignment carries a valid W3C traceparent (the
worker-pool's span of the attempt), the worker times the handler on the wall clock and sends that
timing as `span` on its Complete or Fail; the worker-pool records it as a child of the attempt's
span. ctx.trace_id is then the job's trace id, for log lines.
"""

import argparse
import itertools
import os
import platform
import queue
import re
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from jobmesh_tls import add_tls_arguments, open_channel, read_tls  # next to this file

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = "jobmesh-python-example/0.1.0"


# ---------------------------------------------------------------- errors a handler may raise


class Unrecoverable(Exception):
    """The job fails now, whatever attempts remain (FAILURE_KIND_UNRECOVERABLE)."""


class RateLimited(Exception):
    """A downstream rate limit: run the job again after `seconds`, without using up an attempt."""

    def __init__(self, seconds, message="rate limited"):
        super().__init__(message)
        self.seconds = float(seconds)


class Cancelled(Exception):
    """Raised by JobContext.check_cancelled() once the server sent Cancel."""


class WaitingForChildren(Exception):
    """Raised by JobContext.run_children() when the job now waits for its children: this run is
    over without a verdict, and the handler runs again (same attempt) once they all completed."""


class Refused(Exception):
    """The server refused a step, children or results request (Nack): `code` is the gRPC status."""

    def __init__(self, code, message):
        super().__init__("refused (code %d): %s" % (code, message))
        self.code = code


# ---------------------------------------------------------------- trace context

# version-traceid-parentid-flags, lowercase hex (https://www.w3.org/TR/trace-context/#traceparent-header).
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def parse_traceparent(value):
    """(trace_id, span_id, flags) of a valid W3C traceparent, else None: version ff, an all-zero
    trace id or span id, upper-case or wrong-length fields are not valid."""
    m = _TRACEPARENT.match(value.strip()) if value else None
    if not m or m.group(1) == "ff" or set(m.group(2)) == {"0"} or set(m.group(3)) == {"0"}:
        return None
    return m.group(2), m.group(3), int(m.group(4), 16)


# Attributes of every span this worker reports: what runs the handler.
SPAN_ATTRIBUTES = {
    "process.runtime.name": platform.python_implementation().lower(),  # "cpython"
    "process.runtime.version": platform.python_version(),
    "process.pid": str(os.getpid()),
}


# ---------------------------------------------------------------- handler registry

HANDLERS = {}


def handler(name):
    """Registers `fn(ctx)` as the handler of jobs named `name`. Its return value is the result."""

    def register(fn):
        HANDLERS[name] = fn
        return fn

    return register


class JobContext:
    """What a handler sees: the job's data, attempt, ways to report progress and see Cancel, and
    steps and child jobs kept on the server."""

    def __init__(self, worker, stream, assignment, data):
        self._worker = worker
        self._stream = stream
        self.assignment = assignment
        self.job = assignment.job
        self.id = assignment.job.id
        self.queue = assignment.job.queue
        self.name = assignment.job.name
        self.data = data
        self.attempt = assignment.attempt
        self.lease_token = assignment.lease_token
        self.traceparent = assignment.traceparent
        # (trace_id, span_id, flags) of the attempt's span when traced; trace_id for log lines.
        self.trace = parse_traceparent(assignment.traceparent)
        self.trace_id = self.trace[0] if self.trace else None
        self.cancelled = threading.Event()
        # What earlier runs of the job left on the server.
        to_py = worker.json_format.MessageToDict
        self._steps = {k: to_py(v) for k, v in assignment.steps.items()}
        self._children_added = set(assignment.children_added)
        self._children_results = (
            {k: to_py(v) for k, v in assignment.children_results.items()} if assignment.children_results_loaded else None)

    def _ids(self):
        return dict(queue=self.queue, job_id=self.id, lease_token=self.lease_token)

    def _request(self, **message):
        """Sends a SaveStep / AddChildren / GetChildrenResults and waits for its Ack."""
        self.check_cancelled()
        kind, body = next(iter(message.items()))
        ack = self._stream.request(lambda request_id: self._worker.pb.ConnectRequest(**{kind: body(request_id)}), self.cancelled)
        if ack is None:
            raise Cancelled("job %s: the stream ended or the job was cancelled" % self.id)
        return ack

    def step(self, name, fn):
        """Runs fn() once per job: its result (any JSON value) is saved on the server, and a later
        attempt that reaches this step gets the saved result back without running fn again. So a
        retry resumes at the step that failed. Step names must be unique within the job."""
        if not name:
            raise ValueError("a step needs a name")
        if name in self._steps:
            return self._steps[name]
        self.check_cancelled()
        value = fn()
        pb = self._worker.pb
        self._request(save_step=lambda rid: pb.SaveStep(request_id=rid, name=name, value=self._worker.to_value(value), **self._ids()))
        self._steps[name] = value
        return value

    def run_children(self, name, children):
        """Adds child jobs (dicts: name, and optionally data, queue, job_id, attempts) once per
        `name` and waits for them: the first time this raises WaitingForChildren (let it
        propagate), and once every child completed the handler runs again and the same call
        returns their results, keyed "queue:id"."""
        if name in self._children_added:
            return self.children_results()
        pb = self._worker.pb

        def child(c):
            msg = pb.ChildJob(name=c["name"], queue=c.get("queue", ""), job_id=c.get("job_id", ""), attempts=c.get("attempts", 0))
            self._worker.json_format.ParseDict(c.get("data", {}), msg.data)
            return msg

        ack = self._request(add_children=lambda rid: pb.AddChildren(request_id=rid, name=name, children=[child(c) for c in children], **self._ids()))
        self._children_added.add(name)
        if ack.waiting_children:
            raise WaitingForChildren("job %s waits for its children" % self.id)
        self._children_results = {k: self._worker.json_format.MessageToDict(v) for k, v in ack.children_results.items()}
        return self._children_results

    def children_results(self):
        """The results of this job's completed children, keyed "queue:id" (e.g. for a parent
        enqueued with EnqueueFlow); empty for a job without children."""
        if self._children_results is None:
            pb = self._worker.pb
            ack = self._request(get_children_results=lambda rid: pb.GetChildrenResults(request_id=rid, **self._ids()))
            self._children_results = {k: self._worker.json_format.MessageToDict(v) for k, v in ack.children_results.items()}
        return self._children_results

    def progress(self, value):
        """Reports progress: a number 0..100 or any JSON value. Also extends the lease."""
        self._stream.send(self._worker.pb.ConnectRequest(progress=self._worker.pb.Progress(
            queue=self.queue, job_id=self.id, lease_token=self.lease_token, progress=self._worker.to_value(value))))

    def log(self, message):
        self._stream.send(self._worker.pb.ConnectRequest(log=self._worker.pb.Log(
            queue=self.queue, job_id=self.id, lease_token=self.lease_token, message=str(message))))

    def check_cancelled(self):
        if self.cancelled.is_set():
            raise Cancelled("job %s was cancelled" % self.id)

    def sleep(self, seconds):
        """Sleeps up to `seconds`; raises Cancelled at once if the job is cancelled meanwhile."""
        if self.cancelled.wait(seconds):
            raise Cancelled("job %s was cancelled" % self.id)


# ---------------------------------------------------------------- example handlers


@handler("echo")
def echo(ctx):
    return ctx.data


@handler("sum")
def sum_numbers(ctx):
    numbers = ctx.data.get("numbers", [])
    total = 0
    for i, n in enumerate(numbers):
        ctx.check_cancelled()
        total += n
        ctx.progress(round(100 * (i + 1) / len(numbers)))
        if ctx.data.get("delay_ms"):
            ctx.sleep(ctx.data["delay_ms"] / 1000.0)
    return {"sum": total}


@handler("fail")
def fail(ctx):
    raise ValueError(ctx.data.get("message", "this job always fails"))


@handler("fail-once")
def fail_once(ctx):
    if ctx.attempt <= 1:
        raise RuntimeError("failing attempt %d on purpose" % ctx.attempt)
    return {"attempt": ctx.attempt}


@handler("unrecoverable")
def unrecoverable(ctx):
    raise Unrecoverable(ctx.data.get("message", "this job cannot succeed"))


@handler("steps")
def steps(ctx):
    # Step "first" runs once; "second" fails on attempt 1, so attempt 2 resumes there and gets
    # the saved result of "first" (which says attempt 1).
    first = ctx.step("first", lambda: {"attempt": ctx.attempt})

    def second():
        if ctx.attempt <= 1:
            raise RuntimeError("step second fails on attempt 1 on purpose")
        return {"attempt": ctx.attempt}

    return {"first": first, "second": ctx.step("second", second)}


@handler("fan-out")
def fan_out(ctx):
    numbers = ctx.data.get("numbers", [])
    results = ctx.run_children("squares", [{"name": "square", "data": {"n": n}} for n in numbers])
    return {"squares": results}


@handler("square")
def square(ctx):
    n = ctx.data.get("n", 0)
    return n * n


@handler("collect")
def collect(ctx):
    return {"collected": ctx.children_results()}


@handler("slow")
def slow(ctx):
    ms = ctx.data.get("ms", 60_000)
    deadline = time.monotonic() + ms / 1000.0
    while time.monotonic() < deadline:
        ctx.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    return {"slept_ms": ms}


# ---------------------------------------------------------------- the stream


class Stream:
    """One Connect call: a request iterator fed by a queue.Queue."""

    _END = object()
    _CREDIT = object()

    def __init__(self, gen):
        self.gen = gen
        self.out = queue.Queue()
        self.closed = threading.Event()
        self.leases = {}  # lease token -> JobContext
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.pending = {}  # request id -> [threading.Event, Ack or Nack or None]
        self.credit_due = 0  # granted, not yet sent: one Credit carries all of it
        self.batches = False  # the server reads ConnectRequest.batch (its Welcome said so)

    def grant(self, n):
        """Gives the server `n` more credits. Credits granted while an earlier grant still waits
        to be sent go out with it, as one Credit message rather than one a job."""
        with self.lock:
            queued = self.credit_due > 0
            self.credit_due += n
        if not queued:
            self.send(self._CREDIT)

    def send(self, msg):
        if not self.closed.is_set():
            self.out.put(msg)

    def request(self, build, cancelled):
        """Sends build(request_id) and waits for the Ack with that request_id. Returns the Ack, or
        None when the stream closed or `cancelled` was set first; raises Refused on a Nack."""
        rid = str(next(self.ids))
        slot = [threading.Event(), None]
        with self.lock:
            self.pending[rid] = slot
        self.send(build(rid))
        try:
            while not slot[0].wait(0.05):
                if self.closed.is_set() or cancelled.is_set():
                    return None
        finally:
            with self.lock:
                self.pending.pop(rid, None)
        reply = slot[1]
        if reply is None:
            return None
        if reply.DESCRIPTOR.name == "Nack":
            raise Refused(reply.code, reply.message)
        return reply

    def answer(self, request_id, reply):
        """Hands an Ack or Nack to the request waiting for it, if any."""
        with self.lock:
            slot = self.pending.get(request_id)
        if slot is None:
            return False
        slot[1] = reply
        slot[0].set()
        return True

    def close(self):
        if not self.closed.is_set():
            self.closed.set()
            self.out.put(self._END)

    def requests(self):
        """The request iterator. Once the server reads batches, what is queued together (the
        verdicts and credits of jobs that ended close together) goes as one batch."""
        pb = self.gen.pb
        while True:
            msgs = [self.out.get()]
            while self.batches and len(msgs) < MAX_BATCH:
                try:
                    msgs.append(self.out.get_nowait())
                except queue.Empty:
                    break
            end = self._END in msgs
            if end:
                msgs = msgs[:msgs.index(self._END)]
            for i, msg in enumerate(msgs):
                if msg is self._CREDIT:
                    with self.lock:
                        n, self.credit_due = self.credit_due, 0
                    msgs[i] = pb.ConnectRequest(credit=pb.Credit(n=n))
            if len(msgs) == 1:
                yield msgs[0]
            elif msgs:
                yield pb.ConnectRequest(batch=pb.ConnectRequestBatch(messages=msgs))
            if end:
                return


# The most messages the worker puts in one batch (the server takes up to 1,000).
MAX_BATCH = 500


def unbatched(responses):
    """The server's messages one by one: a ConnectResponse.batch's in their order."""
    for msg in responses:
        if msg.WhichOneof("message") == "batch":
            yield from msg.batch.messages
        else:
            yield msg


# Statuses that end the stream for good: reconnecting would be refused the same way.
FATAL = ("UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND", "INVALID_ARGUMENT", "UNIMPLEMENTED")


class Worker:
    def __init__(self, address, queues, names, concurrency, worker_id, exit_on_drain, log=None, shutdown_grace=10.0, api_key=None, tls=None,
                 keepalive=10.0, keepalive_timeout=5.0):
        import grpc
        from google.protobuf import duration_pb2, json_format, struct_pb2
        from jobmesh.v1 import worker_service_pb2 as pb, worker_service_pb2_grpc as pb_grpc

        self.grpc, self.json_format, self.struct_pb2, self.duration_pb2 = grpc, json_format, struct_pb2, duration_pb2
        self.pb, self.pb_grpc = pb, pb_grpc
        self.address = address
        self.metadata = (("authorization", "Bearer " + api_key),) if api_key else ()
        self.tls = tls  # read_tls's files, or None for plaintext
        # gRPC keepalive: a connection that answers no ping within keepalive_timeout of one is closed,
        # the stream fails, the jobs in hand are given up and the worker reconnects (a blackholed route).
        self.keepalive = keepalive
        self.keepalive_timeout = keepalive_timeout
        self.queues = queues
        self.names = names or []
        self.concurrency = max(1, concurrency)
        self.worker_id = worker_id
        self.exit_on_drain = exit_on_drain
        self.shutdown_grace = shutdown_grace
        self.executor = ThreadPoolExecutor(max_workers=self.concurrency)
        self.stopping = threading.Event()
        self.log = log or (lambda m: print("[worker %s] %s" % (worker_id, m), file=sys.stderr, flush=True))
        self.stream = None
        self.cancelled = {}  # (queue, job id) -> JobContext, for Cancel

    # JSON <-> protobuf
    def to_value(self, v):
        value = self.struct_pb2.Value()
        self.json_format.ParseDict(v, value)
        return value

    def run(self):
        """Runs streams until stopped or drained with --exit-on-drain (returns 0), or refused for
        good (returns 2)."""
        backoff = 0.2
        code = 0
        while not self.stopping.is_set():
            started = time.monotonic()
            outcome = self.session()
            if outcome == "exit":
                break
            if outcome.split(":")[0] in FATAL:
                self.log("the server refused this worker (%s); stopping" % outcome)
                code = 2
                break
            if time.monotonic() - started > 5:
                backoff = 0.2
            if self.stopping.is_set():
                break
            self.log("stream ended (%s); reconnecting in %.1f s" % (outcome, backoff))
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, 10.0)
        # Stopping (a signal) or drained: give running handlers a moment, then leave without them.
        self.executor.shutdown(wait=False)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(t.is_alive() for t in list(getattr(self.executor, "_threads", ()))):
            time.sleep(0.05)
        return code

    def session(self):
        """Runs one Connect stream to its end. Returns "exit", or why it ended."""
        pb = self.pb
        stream = Stream(self)
        self.stream = stream
        channel = open_channel(self.grpc, self.address, [
            ("grpc.enable_http_proxy", 0),
            ("grpc.keepalive_time_ms", int(self.keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            # Pings on a stream that sends nothing else (a worker waiting for jobs).
            ("grpc.http2.max_pings_without_data", 0),
        ], self.tls)
        draining = threading.Event()
        heartbeat_stop = threading.Event()
        try:
            stub = self.pb_grpc.WorkerServiceStub(channel)
            stream.send(pb.ConnectRequest(hello=pb.Hello(
                worker_id=self.worker_id, queues=self.queues, max_in_flight=self.concurrency,
                job_names=self.names, sdk=SDK, labels={"host": socket.gethostname(), "lang": "python"}, accepts_batches=True)))
            responses = stub.Connect(stream.requests(), metadata=self.metadata)
            welcomed = False
            for msg in unbatched(responses):
                kind = msg.WhichOneof("message")
                if kind == "welcome":
                    welcomed = True
                    stream.batches = msg.welcome.accepts_batches
                    hb = msg.welcome.heartbeat_interval.ToMilliseconds() / 1000.0 or 10.0
                    self.log("connected to %s, session %s, heartbeat every %.2f s" % (self.address, msg.welcome.session_id, hb))
                    threading.Thread(target=self.heartbeats, args=(stream, hb, heartbeat_stop), daemon=True).start()
                    stream.grant(self.concurrency)
                elif kind == "assignment":
                    # Stopping: an assignment that crossed the last credit stays unstarted; the
                    # server takes it back with the stream, without using an attempt.
                    if not self.stopping.is_set():
                        self.start_job(stream, msg.assignment, draining)
                elif kind == "cancel":
                    with stream.lock:
                        ctxs = [c for c in stream.leases.values() if c.id == msg.cancel.job_id and c.queue == msg.cancel.queue]
                    for c in ctxs:
                        self.log("cancel %s/%s%s: %s" % (c.queue, c.id, " trace %s" % c.trace_id if c.trace_id else "", msg.cancel.reason))
                        c.cancelled.set()
                elif kind == "ack":
                    if msg.ack.request_id:
                        stream.answer(msg.ack.request_id, msg.ack)
                elif kind == "nack":
                    # A refused request is the handler's to report; any other Nack is logged.
                    if not (msg.nack.request_id and stream.answer(msg.nack.request_id, msg.nack)):
                        self.log("nack job %s: code %d %s" % (msg.nack.job_id, msg.nack.code, msg.nack.message))
                elif kind == "drain":
                    self.log("drain: finishing the jobs in hand, asking for no more")
                    draining.set()
                    threading.Thread(target=self.finish_drain, args=(stream,), daemon=True).start()
            if not welcomed:
                return "no Welcome"
            if draining.is_set():
                return "exit" if self.exit_on_drain else "drained"
            return "server ended the stream"
        except self.grpc.RpcError as err:
            if draining.is_set() and self.exit_on_drain:
                return "exit"
            return "%s: %s" % (err.code().name, err.details())
        finally:
            heartbeat_stop.set()
            stream.close()
            # Jobs still in hand went back to waiting on the server: cancel them here.
            with stream.lock:
                for c in stream.leases.values():
                    c.cancelled.set()
            channel.close()

    def finish_drain(self, stream):
        while not stream.closed.is_set():
            with stream.lock:
                if not stream.leases:
                    break
            time.sleep(0.02)
        stream.close()

    def heartbeats(self, stream, interval, stop):
        while not stop.wait(interval):
            with stream.lock:
                tokens = list(stream.leases.keys())
            if tokens:
                stream.send(self.pb.ConnectRequest(heartbeat=self.pb.Heartbeat(lease_tokens=tokens)))

    def start_job(self, stream, assignment, draining):
        data = self.json_format.MessageToDict(assignment.job.data) if assignment.job.HasField("data") else {}
        ctx = JobContext(self, stream, assignment, data)
        with stream.lock:
            stream.leases[assignment.lease_token] = ctx
        self.executor.submit(self.run_job, stream, ctx, draining)

    def run_job(self, stream, ctx, draining):
        pb = self.pb
        started = time.time_ns()
        try:
            fn = HANDLERS.get(ctx.name)
            if fn is None:
                raise Unrecoverable("no handler for job name %r" % ctx.name)
            result = fn(ctx)
            complete = pb.Complete(queue=ctx.queue, job_id=ctx.id, lease_token=ctx.lease_token, result=self.to_value(result))
            self.report_span(complete, ctx, started)
            reply = pb.ConnectRequest(complete=complete)
        except WaitingForChildren:
            # The lease ended on the server: no verdict; the job comes back once its children completed.
            reply = None
        except BaseException as err:  # every failure is reported, never lost
            f = pb.Fail(queue=ctx.queue, job_id=ctx.id, lease_token=ctx.lease_token, message=str(err) or type(err).__name__,
                        error_name=type(err).__name__, stacktrace=traceback.format_exception(type(err), err, err.__traceback__))
            if isinstance(err, Unrecoverable):
                f.kind = pb.FAILURE_KIND_UNRECOVERABLE
            elif isinstance(err, RateLimited):
                f.kind = pb.FAILURE_KIND_RATE_LIMITED
                f.retry_after.FromMilliseconds(int(err.seconds * 1000))
            else:
                f.kind = pb.FAILURE_KIND_RETRYABLE
            self.report_span(f, ctx, started)
            reply = pb.ConnectRequest(fail=f)
        with stream.lock:
            stream.leases.pop(ctx.lease_token, None)
        # On a stream that ended, the server already took the job back: the result is dropped.
        if reply is not None:
            stream.send(reply)
        if not draining.is_set() and not self.stopping.is_set():
            stream.grant(1)

    @staticmethod
    def report_span(verdict, ctx, started_ns):
        """Sets the verdict's (Complete or Fail) `span` to the handler's wall-clock timing, when the
        Assignment was traced: this worker has no OpenTelemetry SDK, so the worker-pool records
        the span for it, as a child of the attempt's span."""
        if ctx.trace is None:
            return
        span = verdict.span
        span.name = "work %s" % ctx.name
        span.start_time.FromNanoseconds(started_ns)
        span.end_time.FromNanoseconds(time.time_ns())
        span.attributes.update(SPAN_ATTRIBUTES)

    def stop(self):
        """The first SIGTERM or SIGINT: asks for no more work, lets the jobs in hand finish and
        report (for up to the shutdown grace), then closes the stream; their verdicts reach the
        server, so a scale-down runs no job twice. The second, or the grace's end: closes it at
        once and cancels what still runs (the server gives those jobs to another worker)."""
        if self.stopping.is_set():
            self.stop_now()
            return
        self.stopping.set()
        self.log("stopping: finishing the jobs in hand (up to %.1f s), asking for no more" % self.shutdown_grace)
        threading.Thread(target=self.finish_stop, daemon=True).start()

    def finish_stop(self):
        deadline = time.monotonic() + self.shutdown_grace
        s = self.stream
        while s and not s.closed.is_set() and time.monotonic() < deadline:
            with s.lock:
                if not s.leases:
                    break
            time.sleep(0.02)
        self.stop_now()

    def stop_now(self):
        s = self.stream
        if s:
            with s.lock:
                for c in s.leases.values():
                    c.cancelled.set()
            s.close()


def seconds(text):
    """A duration as the services write it (10s, 500ms, 1m; a bare number is seconds), in seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError("%r is not a duration: write it as 10s, 500ms or 1m" % text)
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[m.group(2)]


def main(argv=None):
    env = os.environ
    p = argparse.ArgumentParser(description="A Jobmesh worker in Python (WorkerService.Connect).")
    p.add_argument("--address", default=env.get("JOBMESH_ADDRESS", "127.0.0.1:50051"))
    p.add_argument("--queues", default=env.get("JOBMESH_QUEUES", ""), help="comma-separated queue names")
    p.add_argument("--names", default=env.get("JOBMESH_JOB_NAMES", ""), help="comma-separated job names (default: every handler)")
    p.add_argument("--concurrency", type=int, default=int(env.get("JOBMESH_CONCURRENCY", "4")))
    p.add_argument("--worker-id", default=env.get("JOBMESH_WORKER_ID", "py-%s-%d" % (socket.gethostname(), os.getpid())))
    p.add_argument("--stubs", default=env.get("JOBMESH_STUBS", os.path.join(HERE, "gen")))
    p.add_argument("--exit-on-drain", action="store_true", default=env.get("JOBMESH_EXIT_ON_DRAIN", "") in ("1", "true"))
    p.add_argument("--shutdown-grace", type=seconds, default=env.get("JOBMESH_SHUTDOWN_GRACE", "10s"),
                   help="how long SIGTERM lets the jobs in hand finish: 10s, 500ms, 1m (default 10s)")
    p.add_argument("--api-key", default=env.get("JOBMESH_API_KEY", ""), help="sent as authorization: Bearer <key>")
    p.add_argument("--keepalive", type=seconds, default=env.get("JOBMESH_KEEPALIVE_INTERVAL", "10s"),
                   help="gRPC keepalive ping interval (default 10s)")
    p.add_argument("--keepalive-timeout", type=seconds, default=env.get("JOBMESH_KEEPALIVE_TIMEOUT", "5s"),
                   help="a connection that answers no ping within this is dropped and the worker reconnects (default 5s)")
    add_tls_arguments(p, env)
    args = p.parse_args(argv)
    tls = read_tls(p, args)
    queues = [q for q in args.queues.split(",") if q]
    if not queues:
        p.error("--queues (or JOBMESH_QUEUES) must name at least one queue")
    if os.path.isdir(args.stubs):
        sys.path.insert(0, args.stubs)
    names = [n for n in args.names.split(",") if n] or sorted(HANDLERS)
    w = Worker(args.address, queues, names, args.concurrency, args.worker_id, args.exit_on_drain, shutdown_grace=args.shutdown_grace,
               api_key=args.api_key or None, tls=tls, keepalive=args.keepalive, keepalive_timeout=args.keepalive_timeout)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: w.stop())
    w.log("serving %s on %s, jobs: %s, concurrency %d" % (",".join(queues), args.address, ",".join(names), w.concurrency))
    code = w.run()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pool threads of handlers that ignored cancellation must not keep the process alive


if __name__ == "__main__":
    sys.exit(main())
