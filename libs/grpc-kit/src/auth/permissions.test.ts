import * as pb from '@jobmesh/contracts';
import { ApiKeyPrincipal, requireQueues } from './api-keys';
import { ALL_QUEUES, PERMISSIONS } from './permissions';

describe('PERMISSIONS', () => {
  it('has a rule for every method of every jobmesh.v1 service, and none for a method that does not exist', () => {
    const methods = [pb.SchedulerServiceService, pb.WorkerServiceService, pb.DeadLetterServiceService, pb.MonitorServiceService].flatMap((s) => Object.values(s).map((m) => m.path));
    expect(Object.keys(PERMISSIONS).sort()).toEqual(methods.sort());
  });

  it('takes every queue of a flow, and of a replay both its filter and its target', () => {
    const flow = pb.EnqueueFlowRequest.fromPartial({ root: { queue: 'a', children: [{ queue: 'b', children: [{ queue: 'c' }] }] } });
    expect([...(PERMISSIONS['/jobmesh.v1.SchedulerService/EnqueueFlow']!.queues(flow as never) as string[])].sort()).toEqual(['a', 'b', 'c']);
    const replay = pb.ReplayDeadLettersRequest.fromPartial({ filter: { queue: 'a' }, targetQueue: 'b' });
    expect(PERMISSIONS['/jobmesh.v1.DeadLetterService/ReplayDeadLetters']!.queues(replay as never)).toEqual(['a', 'b']);
    const byIds = pb.ReplayDeadLettersRequest.fromPartial({ ids: ['x'] });
    expect(PERMISSIONS['/jobmesh.v1.DeadLetterService/ReplayDeadLetters']!.queues(byIds as never)).toBe(ALL_QUEUES);
  });
});

describe('requireQueues', () => {
  const key = new ApiKeyPrincipal('ci', 'producer', ['emails', 'hooks-*']);

  it('lets a key use the queues its globs match', () => {
    expect(() => requireQueues({ principal: key }, ['emails', 'hooks-', 'hooks-github'], 'queue')).not.toThrow();
  });

  it('refuses another queue with PERMISSION_DENIED naming the queue and the key`s queues', () => {
    expect(() => requireQueues({ principal: key }, ['emails', 'emailsx'], 'queue')).toThrow('queue: API key "ci" may not use queue "emailsx"; its queues are emails, hooks-*');
    expect(() => requireQueues({ principal: key }, ['hooks'], 'queue')).toThrow(expect.objectContaining({ kind: 'permission_denied' }));
  });

  it('refuses a call that names no queue unless the key has "*"', () => {
    expect(() => requireQueues({ principal: key }, [''], 'ListQueues')).toThrow(/ListQueues names no queue/);
    expect(() => requireQueues({ principal: new ApiKeyPrincipal('ops', 'viewer', ['*']) }, ['', 'any'], 'ListQueues')).not.toThrow();
  });

  it('takes glob characters of a pattern literally but "*"', () => {
    const dotted = new ApiKeyPrincipal('d', 'worker', ['a.b']);
    expect(dotted.mayUse('a.b')).toBe(true);
    expect(dotted.mayUse('axb')).toBe(false);
  });

  it('does nothing with auth off (no principal)', () => {
    expect(() => requireQueues({}, ['anything'], 'queue')).not.toThrow();
  });
});
