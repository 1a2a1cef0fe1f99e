import { randomUUID } from 'node:crypto';
import type * as pb from '@jobmesh/contracts';

/** Who a worker is and what it takes, as its Hello or LeaseJobs call said. */
export interface WorkerSpec {
  workerId: string;
  queues: Set<string>;
  /** Job names it takes; empty: all. */
  names: Set<string>;
  labels: Record<string, string>;
  sdk: string;
}

/** What a session holds: the tokens of its current leases (the dispatcher keeps the leases). */
abstract class BaseSession {
  readonly id = randomUUID();
  readonly connectedAt = new Date();
  readonly workerId: string;
  readonly queues: Set<string>;
  readonly names: Set<string>;
  readonly labels: Record<string, string>;
  readonly sdk: string;
  /** Tokens of the leases it holds now. */
  readonly leases = new Set<string>();
  /** Told to finish what it holds and take nothing new. */
  draining = false;
  /** Assignments it may be sent now. */
  credit = 0;
  abstract readonly kind: 'stream' | 'unary';
  /** Leases it may hold at once (as reported by ListWorkers). */
  abstract readonly maxInFlight: number;

  constructor(spec: WorkerSpec, draining: boolean) {
    this.workerId = spec.workerId;
    this.queues = spec.queues;
    this.names = spec.names;
    this.labels = spec.labels;
    this.sdk = spec.sdk;
    this.draining = draining;
  }

  /** Whether it takes jobs named `name` on `queue` at all. */
  takes(queue: string, name: string): boolean {
    return this.queues.has(queue) && (this.names.size === 0 || this.names.has(name));
  }

  /** Whether it may be assigned more jobs, now or once it grants credit (what is published as served). */
  abstract get accepting(): boolean;
  /** Whether an assignment may go to it this moment. */
  abstract get hasRoom(): boolean;
  /** Runner slots it may occupy on each of its queues: leases held plus what it may be assigned. */
  abstract get capacity(): number;
  /** Hands over an assignment; false when there is no one to take it any more. */
  abstract deliver(assignment: pb.Assignment): boolean;
}

/**
 * A Connect stream: credit-based, at most max_in_flight leases, told of cancels and drains on the
 * stream, ended from the server side after a drain.
 */
export class StreamSession extends BaseSession {
  readonly kind = 'stream';

  constructor(
    spec: WorkerSpec,
    draining: boolean,
    readonly maxInFlight: number,
    /** Sends a server message on the stream. */
    readonly send: (msg: pb.ConnectResponse) => void,
    /** Ends the stream (OK) from the server side. */
    readonly end: () => void,
  ) {
    super(spec, draining);
  }

  get accepting(): boolean {
    return !this.draining;
  }

  get hasRoom(): boolean {
    return !this.draining && this.credit > 0 && this.leases.size < this.maxInFlight;
  }

  get capacity(): number {
    return this.maxInFlight;
  }

  deliver(assignment: pb.Assignment): boolean {
    this.send({ assignment });
    return true;
  }
}

/** A LeaseJobs call waiting for assignments. */
interface Poll {
  max: number;
  got: pb.Assignment[];
  /** Called with each assignment as it arrives. */
  onAssignment(): void;
}

/**
 * A unary worker (LeaseJobs and friends): one per worker id, queue and job names, kept while the
 * worker keeps polling or holds leases, so that a poll costs no session set-up (no served-names
 * publish, no promotion of waiting jobs). Credit is what its waiting polls still want; it lapses
 * a lease TTL after its last call if it holds nothing by then.
 */
export class UnarySession extends BaseSession {
  readonly kind = 'unary';
  maxInFlight = 0;
  private readonly polls: Poll[] = [];
  /** When it lapses unless it polls or holds a lease (ms). */
  idleUntil = 0;
  /** The dispatcher's timer that looks at idleUntil. */
  idleTimer: unknown;

  constructor(
    spec: WorkerSpec,
    draining: boolean,
    /** The dispatcher's key for it. */
    readonly key: string,
  ) {
    super(spec, draining);
  }

  get polling(): boolean {
    return this.polls.length > 0;
  }

  get accepting(): boolean {
    return !this.draining;
  }

  get hasRoom(): boolean {
    return !this.draining && this.credit > 0;
  }

  get capacity(): number {
    return this.leases.size + this.credit;
  }

  /** A LeaseJobs call starts waiting for up to `max` assignments. */
  startPoll(max: number, onAssignment: () => void): pb.Assignment[] {
    const poll: Poll = { max, got: [], onAssignment };
    this.polls.push(poll);
    this.maxInFlight = max;
    this.credit += max;
    return poll.got;
  }

  /** The call is over: what it did not get is no longer wanted. */
  endPoll(got: pb.Assignment[], idleUntil: number): void {
    const i = this.polls.findIndex((p) => p.got === got);
    if (i < 0) return;
    const [poll] = this.polls.splice(i, 1);
    // Assignments still on their way (their saved steps being read) count against no poll yet.
    this.credit = this.polls.length ? Math.max(0, this.credit - (poll!.max - poll!.got.length)) : 0;
    this.idleUntil = Math.max(this.idleUntil, idleUntil);
  }

  deliver(assignment: pb.Assignment): boolean {
    const poll = this.polls.find((p) => p.got.length < p.max);
    if (!poll) return false;
    poll.got.push(assignment);
    poll.onAssignment();
    return true;
  }
}

/** A connected remote worker. */
export type Session = StreamSession | UnarySession;
