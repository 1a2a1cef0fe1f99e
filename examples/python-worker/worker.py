#!/usr/bin/env python3
"""A Jobmesh worker in Python over the WorkerService Connect stream.

Usage:
  python3 worker.py --queues demo [--address 127.0.0.1:50051] [--names echo,sum]
                    [--concurrency 4] [--worker-id ID] [--stubs DIR] [--exit-on-drain]

Every flag has an environment twin: JOBMESH_ADDRESS, JOBMESH_QUEUES (comma-separated),
JOBMESH_JOB_NAMES, JOBMESH_CONCURRENCY, JOBMESH_WORKER_ID, JOBMESH_STUBS, JOBMESH_EXIT_ON_DRAIN=1.
The stubs come from gen_stubs.sh (default folder: ./gen next to this file, or PYTHONPATH).

Protocol (proto/jobmesh/v1/worker_service.proto): Hello first, the server answers Welcome with the
lease TTL and heartbeat interval; the worker keeps `concurrency` credits outstanding, runs each
Assignment on a thread pool, heartbeats the leases it holds, and answers Complete or Fail with the
lease token. Cancel sets the job's `cancelled` event. Drain stops asking for work; once the jobs in
hand are done the worker closes the stream and reconnects (to another replica), or exits with
--exit-on-drain. A dropped stream is reconnected with exponential backoff; jobs that were in hand
went back to waiting on the server, so their late results are dropped.
"""

import argparse
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

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


# ---------------------------------------------------------------- handler registry

HANDLERS = {}


def handler(name):
    """Registers `fn(ctx)` as the handler of jobs named `name`. Its return value is the result."""

    def register(fn):
        HANDLERS[name] = fn
        return fn

    return register


class JobContext:
    """What a handler sees: the job's data, attempt, and ways to report progress and see Cancel."""

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
        self.cancelled = threading.Event()

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

    def __init__(self, gen):
        self.gen = gen
        self.out = queue.Queue()
        self.closed = threading.Event()
        self.leases = {}  # lease token -> JobContext
        self.lock = threading.Lock()

    def send(self, msg):
        if not self.closed.is_set():
            self.out.put(msg)

    def close(self):
        if not self.closed.is_set():
            self.closed.set()
            self.out.put(self._END)

    def requests(self):
        while True:
            msg = self.out.get()
            if msg is self._END:
                return
            yield msg


class Worker:
    def __init__(self, address, queues, names, concurrency, worker_id, exit_on_drain, log=None):
        import grpc
        from google.protobuf import duration_pb2, json_format, struct_pb2
        from jobmesh.v1 import worker_service_pb2 as pb, worker_service_pb2_grpc as pb_grpc

        self.grpc, self.json_format, self.struct_pb2, self.duration_pb2 = grpc, json_format, struct_pb2, duration_pb2
        self.pb, self.pb_grpc = pb, pb_grpc
        self.address = address
        self.queues = queues
        self.names = names or []
        self.concurrency = max(1, concurrency)
        self.worker_id = worker_id
        self.exit_on_drain = exit_on_drain
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
        backoff = 0.2
        while not self.stopping.is_set():
            started = time.monotonic()
            outcome = self.session()
            if outcome == "exit":
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

    def session(self):
        """Runs one Connect stream to its end. Returns "exit", or why it ended."""
        pb = self.pb
        stream = Stream(self)
        self.stream = stream
        channel = self.grpc.insecure_channel(self.address, options=[("grpc.enable_http_proxy", 0)])
        draining = threading.Event()
        heartbeat_stop = threading.Event()
        try:
            stub = self.pb_grpc.WorkerServiceStub(channel)
            stream.send(pb.ConnectRequest(hello=pb.Hello(
                worker_id=self.worker_id, queues=self.queues, max_in_flight=self.concurrency,
                job_names=self.names, sdk=SDK, labels={"host": socket.gethostname(), "lang": "python"})))
            responses = stub.Connect(stream.requests())
            welcomed = False
            for msg in responses:
                kind = msg.WhichOneof("message")
                if kind == "welcome":
                    welcomed = True
                    hb = msg.welcome.heartbeat_interval.ToMilliseconds() / 1000.0 or 10.0
                    self.log("connected to %s, session %s, heartbeat every %.2f s" % (self.address, msg.welcome.session_id, hb))
                    threading.Thread(target=self.heartbeats, args=(stream, hb, heartbeat_stop), daemon=True).start()
                    stream.send(pb.ConnectRequest(credit=pb.Credit(n=self.concurrency)))
                elif kind == "assignment":
                    self.start_job(stream, msg.assignment, draining)
                elif kind == "cancel":
                    with stream.lock:
                        ctxs = [c for c in stream.leases.values() if c.id == msg.cancel.job_id and c.queue == msg.cancel.queue]
                    for c in ctxs:
                        self.log("cancel %s/%s: %s" % (c.queue, c.id, msg.cancel.reason))
                        c.cancelled.set()
                elif kind == "nack":
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
        try:
            fn = HANDLERS.get(ctx.name)
            if fn is None:
                raise Unrecoverable("no handler for job name %r" % ctx.name)
            result = fn(ctx)
            reply = pb.ConnectRequest(complete=pb.Complete(
                queue=ctx.queue, job_id=ctx.id, lease_token=ctx.lease_token, result=self.to_value(result)))
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
            reply = pb.ConnectRequest(fail=f)
        with stream.lock:
            stream.leases.pop(ctx.lease_token, None)
        # On a stream that ended, the server already took the job back: the result is dropped.
        stream.send(reply)
        if not draining.is_set() and not self.stopping.is_set():
            stream.send(pb.ConnectRequest(credit=pb.Credit(n=1)))

    def stop(self):
        self.stopping.set()
        s = self.stream
        if s:
            with s.lock:
                for c in s.leases.values():
                    c.cancelled.set()
            s.close()


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
    args = p.parse_args(argv)
    queues = [q for q in args.queues.split(",") if q]
    if not queues:
        p.error("--queues (or JOBMESH_QUEUES) must name at least one queue")
    if os.path.isdir(args.stubs):
        sys.path.insert(0, args.stubs)
    names = [n for n in args.names.split(",") if n] or sorted(HANDLERS)
    w = Worker(args.address, queues, names, args.concurrency, args.worker_id, args.exit_on_drain)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: w.stop())
    w.log("serving %s on %s, jobs: %s, concurrency %d" % (",".join(queues), args.address, ",".join(names), w.concurrency))
    w.run()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # pool threads of handlers that ignored cancellation must not keep the process alive


if __name__ == "__main__":
    sys.exit(main())
