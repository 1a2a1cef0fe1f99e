import type { ServerDuplexStream } from '@grpc/grpc-js';
import * as pb from '@jobmesh/contracts';
import { ERROR_TRAILER, InvalidArgumentError } from '@jobmesh/core';
import { type CallContext, type RpcKit, requireQueues } from '@jobmesh/grpc-kit';
import { type Logger, parseTraceparent } from '@jobmesh/telemetry';
import { type Enqueuer, MAX_BULK } from './enqueue';

/** The server reads no further while this many jobs of one stream are unanswered. */
export const STREAM_MAX_UNANSWERED = 2_000;

/** At most this many acknowledgements in one response (a client's default 4 MiB limit holds about 40,000). */
export const STREAM_MAX_ACKS = 1_000;

/** One job read from the stream, answered once `ack` is set, in the order read. */
interface Slot {
  ack?: pb.EnqueueAck;
}

/**
 * EnqueueStream: every StreamedJob is enqueued as EnqueueJob would enqueue it, all of one
 * message (and of the same turn of the event loop) at once, so libs/queue writes them to Redis
 * together (keyed ones in one transaction per queue, see AtomicAdder). Acknowledgements go out
 * in the order the jobs came, as many per message as are ready together.
 *
 * Flow control: while STREAM_MAX_UNANSWERED jobs are unanswered the call is paused, so grpc-js
 * stops reading and HTTP/2 flow control holds the client back; so it is while the client does not
 * read its acknowledgements (a write that grpc-js buffers). When the client half-closes, the
 * stream ends once every job read is answered. When the service shuts down, it reads nothing
 * more, answers what it read, and ends the stream: a job it did not answer was not enqueued.
 */
export async function enqueueStream(
  enqueuer: Enqueuer,
  kit: RpcKit,
  logger: Logger,
  shutdown: AbortSignal,
  call: ServerDuplexStream<pb.EnqueueStreamRequest, pb.EnqueueStreamResponse>,
  ctx: CallContext,
): Promise<void> {
  const slots: Slot[] = [];
  let lastSeq: number | undefined;
  let ended = false;
  let paused = false;
  /** The client is not reading its acknowledgements: read no more jobs until it does. */
  let unread = false;
  let flushing = false;
  let done!: () => void;
  const over = new Promise<void>((resolve) => (done = resolve));

  const finishIfIdle = (): void => {
    if (slots.length === 0 && (ended || shutdown.aborted || ctx.signal.aborted)) done();
  };

  /** Sends the answered head of `slots` in one message, after this turn's answers are in. */
  const flush = (): void => {
    flushing = false;
    let n = 0;
    while (n < slots.length && slots[n]!.ack) n++;
    const acks = slots.splice(0, n).map((s) => s.ack!);
    for (let at = 0; at < acks.length && !ctx.signal.aborted; at += STREAM_MAX_ACKS) {
      if (!call.write({ acks: acks.slice(at, at + STREAM_MAX_ACKS) })) unread = true;
    }
    if (unread) pause();
    resumeIfRoom();
    finishIfIdle();
  };
  const pause = (): void => {
    if (paused) return;
    paused = true;
    call.pause();
  };
  const resumeIfRoom = (): void => {
    if (paused && !unread && slots.length < STREAM_MAX_UNANSWERED / 2 && !shutdown.aborted && !ctx.signal.aborted) {
      paused = false;
      call.resume();
    }
  };
  const onDrain = (): void => {
    unread = false;
    resumeIfRoom();
  };
  const answered = (slot: Slot, ack: pb.EnqueueAck): void => {
    slot.ack = ack;
    if (!flushing) {
      flushing = true;
      setImmediate(flush);
    }
  };
  const refused = (seq: number, err: unknown): pb.EnqueueAck => {
    const mapped = kit.toStatus(err);
    if (!mapped.expected) logger.error({ err, method: ctx.method }, 'unexpected error enqueueing a streamed job');
    const facts = mapped.metadata?.get(ERROR_TRAILER)[0];
    const field = (err as { field?: unknown }).field;
    return {
      seq,
      error: { code: mapped.code, message: mapped.details, field: typeof field === 'string' ? field : '', errorFacts: Buffer.isBuffer(facts) ? facts : Buffer.alloc(0) },
    };
  };

  const take = (job: pb.StreamedJob): void => {
    const slot: Slot = {};
    slots.push(slot);
    const seq = job.seq;
    if (lastSeq !== undefined && seq <= lastSeq) {
      answered(slot, refused(seq, new InvalidArgumentError('seq', `${seq} is not greater than the previous job's, ${lastSeq}`)));
      return;
    }
    lastSeq = seq;
    try {
      requireQueues(ctx, [job.queue], 'jobs.queue');
    } catch (err) {
      answered(slot, refused(seq, err));
      return;
    }
    const traceparent = parseTraceparent(job.traceparent) ? job.traceparent : ctx.traceparent;
    enqueuer.enqueue({ queue: job.queue, job: job.job }, traceparent).then(
      (enqueued) => answered(slot, { seq, enqueued }),
      (err: unknown) => answered(slot, refused(seq, err)),
    );
  };

  const onData = (req: pb.EnqueueStreamRequest): void => {
    req.jobs.forEach((job, i) => {
      if (i < MAX_BULK) return take(job);
      // Past the limit, each job is refused on its own: the message was read whole already.
      const slot: Slot = {};
      slots.push(slot);
      answered(slot, refused(job.seq, new InvalidArgumentError('jobs', `a message holds at most ${MAX_BULK} jobs; send the rest in another`)));
    });
    if (slots.length >= STREAM_MAX_UNANSWERED) pause();
  };
  const onEnd = (): void => {
    ended = true;
    finishIfIdle();
  };
  const onStop = (): void => {
    // Read nothing more; what was read is answered, and then the stream ends.
    pause();
    finishIfIdle();
  };
  call.on('data', onData);
  call.on('end', onEnd);
  call.on('drain', onDrain);
  ctx.signal.addEventListener('abort', onStop);
  shutdown.addEventListener('abort', onStop);
  try {
    await over;
  } finally {
    call.off('data', onData);
    call.off('end', onEnd);
    call.off('drain', onDrain);
    ctx.signal.removeEventListener('abort', onStop);
    shutdown.removeEventListener('abort', onStop);
  }
}
