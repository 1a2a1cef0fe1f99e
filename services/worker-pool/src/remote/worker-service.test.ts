import { InvalidArgumentError } from '@jobmesh/core';
import type * as pb from '@jobmesh/contracts';
import { unbatch } from './worker-service';

const credit: pb.ConnectRequest = { credit: { n: 1 } };
const hello: pb.ConnectRequest = { hello: { workerId: 'w', queues: ['q'], maxInFlight: 1, labels: {}, sdk: '', jobNames: [], acceptsBatches: true } };

describe('unbatch', () => {
  it("gives a batch's messages in their order", () => {
    const progress: pb.ConnectRequest = { progress: { queue: 'q', jobId: '1', leaseToken: 't', progress: 1 } };
    expect(unbatch({ messages: [credit, progress, credit] })).toEqual([credit, progress, credit]);
  });

  // A refused batch applies none of its messages: the error alone takes its place, so even the
  // messages before the offending one never reach the stream's reader.
  it.each<[string, pb.ConnectRequest[], RegExp]>([
    ['a Hello', [credit, hello], /batch\.messages\[1\]: is a Hello/],
    ['a batch', [credit, { batch: { messages: [credit] } }], /batch\.messages\[1\]: is a batch: batches do not nest/],
    ['more than 1,000 messages', Array.from({ length: 1001 }, () => credit), /batch\.messages: holds 1001 messages; at most 1000/],
  ])('refuses a batch holding %s, whole', (_what, messages, why) => {
    const out = unbatch({ messages });
    expect(out).toHaveLength(1);
    expect(out[0]).toBeInstanceOf(InvalidArgumentError);
    expect((out[0] as Error).message).toMatch(why);
  });
});
