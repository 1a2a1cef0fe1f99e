// A job's data is encoded to JSON once per enqueue: the size check measures that encoding, and
// BullMQ stores it as it is instead of encoding the data a second time.
import { PayloadTooLargeError } from '@jobmesh/core';
import { FlowProducer, Job, type JobJson, type JobsOptions } from 'bullmq';

/** A job's data together with its JSON encoding, made once (see {@link JobData.encode}). */
export class JobData {
  private constructor(
    readonly value: Record<string, unknown>,
    readonly json: string,
  ) {}

  /**
   * Encodes `value` and refuses it with PayloadTooLargeError naming `field` when the encoding is
   * over `limit` bytes (UTF-8), as libs/core's validatePayload measures it. The encoding is what
   * BullMQ stores.
   */
  static encode(value: Record<string, unknown>, limit: number, field: string): JobData {
    const json = JSON.stringify(value);
    const size = Buffer.byteLength(json, 'utf8');
    if (size > limit) throw new PayloadTooLargeError(field, size, limit);
    return new JobData(value, json);
  }
}

/**
 * A BullMQ Job whose data may be given as JobData: stored as that JSON. BullMQ encodes a job's
 * data in asJSON(), which every add path (Job.create, addJob on a transaction, a flow's nodes)
 * calls once; this one hands over the encoding already made. Plain data behaves as in BullMQ.
 */
export class SerializedJob extends Job {
  /** The data's JSON when it was given as JobData: what BullMQ stores as the job's data. */
  readonly json?: string;

  constructor(queue: ConstructorParameters<typeof Job>[0], name: string, data: unknown, opts?: JobsOptions, id?: string) {
    const encoded = data instanceof JobData ? data : undefined;
    super(queue, name, encoded ? encoded.value : data, opts, id);
    this.json = encoded?.json;
  }

  /**
   * What BullMQ's Job.create sends for this job: its JSON, checked as Job.create checks it
   * (BullMQ's option errors are thrown here).
   */
  checkedJSON(): JobJson {
    const json = this.asJSON();
    this.validateOptions(json);
    return json;
  }

  override asJSON(): JobJson {
    if (this.json === undefined) return super.asJSON();
    // Without data, BullMQ's asJSON encodes `{}`: nothing of the payload is encoded again.
    const { data } = this;
    this.data = undefined;
    try {
      return { ...super.asJSON(), data: this.json };
    } finally {
      this.data = data;
    }
  }
}

/** A FlowProducer whose nodes are SerializedJobs, so a node's data may be given as JobData. */
export class SerializedFlowProducer extends FlowProducer {
  protected override get Job(): typeof Job {
    // BullMQ's generics (data, result and name types) say nothing at run time.
    return SerializedJob as unknown as typeof Job;
  }
}
