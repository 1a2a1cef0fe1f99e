import { Metadata, type ServiceError, status } from '@grpc/grpc-js';
import * as core from '@jobmesh/core';
import { serviceError, toStatus } from '@jobmesh/grpc-kit';
import {
  AlreadyExistsError,
  DeadLetterNotFoundError,
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  JobNotFoundError,
  NotFoundError,
  PermissionDeniedError,
  QueueNotFoundError,
  ResourceExhaustedError,
  ScheduleNotFoundError,
  StatusError,
  UnauthenticatedError,
  UnavailableError,
  toClientError,
} from './errors';
import { WorkerRejectedError, WorkerRequestError } from './remote-worker';

/** What a client receives for an error a handler threw: grpc-kit's status, as grpc-js delivers it. */
function overTheWire(thrown: unknown): ServiceError {
  const sent = serviceError(toStatus(thrown));
  return Object.assign(new Error(`${sent.code} ${status[sent.code!]}: ${sent.details}`), {
    code: sent.code!,
    details: sent.details!,
    metadata: sent.metadata ?? new Metadata(),
  });
}

/** A grpc-js error with this status and no error trailer (an older server, or grpc-js itself). */
function bare(code: status, details = 'something'): ServiceError {
  return Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details, metadata: new Metadata() });
}

class DeadLetterMissing extends core.NotFoundError {
  constructor(readonly id: string) {
    super(`dead letter "${id}" not found`);
  }
}

describe('toClientError', () => {
  it('turns each typed server error into the client class of the same name, with the facts it carried', () => {
    expect(toClientError(overTheWire(new core.QueueNotFoundError('emails')))).toMatchObject({ constructor: QueueNotFoundError, queue: 'emails' });
    expect(toClientError(overTheWire(new core.JobNotFoundError('emails', '42')))).toMatchObject({ constructor: JobNotFoundError, queue: 'emails', jobId: '42' });
    expect(toClientError(overTheWire(new core.ScheduleNotFoundError('emails', 'nightly')))).toMatchObject({
      constructor: ScheduleNotFoundError,
      queue: 'emails',
      scheduleId: 'nightly',
    });
    // The dead-letter service's own NotFoundError subclass, as services/dead-letter names it.
    const dl = Object.defineProperty(new DeadLetterMissing('emails:1:1'), 'name', { value: 'DeadLetterNotFoundError' });
    expect(toClientError(overTheWire(dl))).toMatchObject({ constructor: DeadLetterNotFoundError, id: 'emails:1:1' });
    expect(toClientError(overTheWire(new core.InvalidArgumentError('jobs[3].options.job_id', 'repeats')))).toMatchObject({
      constructor: InvalidArgumentError,
      field: 'jobs[3].options.job_id',
    });
    expect(toClientError(overTheWire(new core.PayloadTooLargeError('job.data', 300_000, 262_144)))).toMatchObject({ constructor: ResourceExhaustedError, field: 'job.data' });
    expect(toClientError(overTheWire(new core.AlreadyExistsError('queue "q" already exists')))).toBeInstanceOf(AlreadyExistsError);
    expect(toClientError(overTheWire(new core.StaleLeaseError('q', '1')))).toBeInstanceOf(FailedPreconditionError);
    expect(toClientError(overTheWire(new core.UnauthenticatedError('no key')))).toBeInstanceOf(UnauthenticatedError);
    expect(toClientError(overTheWire(new core.PermissionDeniedError('out of scope')))).toBeInstanceOf(PermissionDeniedError);
    expect(toClientError(overTheWire(new core.UnavailableError('peer down')))).toBeInstanceOf(UnavailableError);
  });

  it('keeps code, details and message as grpc-js gave them, and that error as cause', () => {
    const received = overTheWire(new core.QueueNotFoundError('emails'));
    const err = toClientError(received);
    expect(err.code).toBe(status.NOT_FOUND);
    expect(typeof err.code).toBe('number');
    expect(err.details).toBe(received.details);
    // The server's message; the class says what grpc-js's "5 NOT_FOUND: " prefix said.
    expect(err.message).toBe(received.details);
    expect(String(err)).toBe(`QueueNotFoundError: ${received.details}`);
    expect(err.metadata).toBe(received.metadata);
    expect(err.cause).toBe(received);
    expect(err.name).toBe('QueueNotFoundError');
    // As `new Error(m, { cause })` has it: not an own enumerable field, so logs are not doubled.
    expect(Object.keys(err)).not.toContain('cause');
  });

  it('maps each status without a trailer by its code alone', () => {
    const cases: Array<[status, abstract new (...args: never[]) => Error]> = [
      [status.NOT_FOUND, NotFoundError],
      [status.INVALID_ARGUMENT, InvalidArgumentError],
      [status.ALREADY_EXISTS, AlreadyExistsError],
      [status.FAILED_PRECONDITION, FailedPreconditionError],
      [status.PERMISSION_DENIED, PermissionDeniedError],
      [status.UNAUTHENTICATED, UnauthenticatedError],
      [status.RESOURCE_EXHAUSTED, ResourceExhaustedError],
      [status.UNAVAILABLE, UnavailableError],
      [status.DEADLINE_EXCEEDED, DeadlineExceededError],
      [status.INTERNAL, StatusError],
      [status.CANCELLED, StatusError],
      [status.UNIMPLEMENTED, StatusError],
      [status.UNKNOWN, StatusError],
    ];
    for (const [code, cls] of cases) {
      const err = toClientError(bare(code));
      expect({ code, cls: err.constructor.name }).toEqual({ code, cls: cls.name });
      expect(err.code).toBe(code);
    }
    // Without the trailer there is no field to name, and no kind of thing that was not found.
    expect(toClientError(bare(status.INVALID_ARGUMENT))).toMatchObject({ field: '' });
    expect(toClientError(bare(status.NOT_FOUND))).not.toBeInstanceOf(QueueNotFoundError);
  });

  it('falls back to the status code when the trailer is garbled or lacks the facts its name needs', () => {
    const garbled = bare(status.NOT_FOUND);
    garbled.metadata.set(core.ERROR_TRAILER, Buffer.from('{not json'));
    expect(toClientError(garbled).constructor).toBe(NotFoundError);
    const partial = bare(status.NOT_FOUND);
    partial.metadata.set(core.ERROR_TRAILER, Buffer.from(JSON.stringify({ name: 'JobNotFoundError', queue: 'q' })));
    expect(toClientError(partial).constructor).toBe(NotFoundError);
  });

  it('is true to instanceof for the client class, the core class and StatusError, and StatusError for nothing else', () => {
    const err = toClientError(overTheWire(new core.QueueNotFoundError('emails')));
    expect(err).toBeInstanceOf(QueueNotFoundError);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err).toBeInstanceOf(core.NotFoundError);
    expect(err).toBeInstanceOf(core.JobmeshError);
    expect(err).toBeInstanceOf(StatusError);
    expect(err).not.toBeInstanceOf(JobNotFoundError);
    expect(toClientError(bare(status.UNAVAILABLE))).toBeInstanceOf(core.UnavailableError);
    expect(new Error('plain')).not.toBeInstanceOf(StatusError);
    expect(bare(status.INTERNAL)).not.toBeInstanceOf(StatusError);
    expect(StatusError[Symbol.hasInstance](null)).toBe(false);
  });

  it('maps back to the same status when a service passes a client error on (grpc-kit)', () => {
    const err = toClientError(overTheWire(new core.InvalidArgumentError('job.name', 'is required')));
    expect(toStatus(err)).toMatchObject({ code: status.INVALID_ARGUMENT, details: 'job.name: is required' });
    const internal = toClientError(bare(status.DATA_LOSS, 'gone'));
    expect(toStatus(internal)).toMatchObject({ code: status.DATA_LOSS, details: 'gone' });
    expect(internal.message).toBe('DATA_LOSS: gone');
    // The relayed status carries the trailer again, so the next client gets the same class.
    const relayed = toClientError(overTheWire(toClientError(overTheWire(new core.QueueNotFoundError('emails')))));
    expect(relayed).toMatchObject({ constructor: QueueNotFoundError, queue: 'emails', details: expect.stringContaining('"emails"') });
  });

  it('returns anything that is not a grpc-js status error as it is', () => {
    const plain = new TypeError('bad');
    expect(toClientError(plain)).toBe(plain);
    expect(toClientError('text')).toBe('text');
    const typed = toClientError(bare(status.UNAVAILABLE));
    expect(toClientError(typed)).toBe(typed);
  });
});

describe('RemoteWorker errors', () => {
  it('WorkerRejectedError keeps code and details and has the refusal as a typed cause', () => {
    const received = overTheWire(new core.QueueNotFoundError('rw-nope'));
    const err = new WorkerRejectedError(received.code, received.details, received.metadata);
    expect(err).toBeInstanceOf(StatusError);
    expect(err).toMatchObject({ name: 'WorkerRejectedError', code: status.NOT_FOUND, details: received.details });
    expect(err.message).toMatch(/refused the worker \(NOT_FOUND\)/);
    expect(err.cause).toBeInstanceOf(QueueNotFoundError);
    expect(err.cause).toMatchObject({ queue: 'rw-nope', code: status.NOT_FOUND });
  });

  it('WorkerRequestError from a Nack has its code as a typed cause', () => {
    const err = new WorkerRequestError(status.FAILED_PRECONDITION, 'lease lost');
    expect(err).toBeInstanceOf(StatusError);
    expect(err).toMatchObject({ code: status.FAILED_PRECONDITION, details: 'lease lost', message: 'lease lost' });
    expect(err.cause).toBeInstanceOf(FailedPreconditionError);
  });
});
