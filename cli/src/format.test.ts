import * as pb from '@jobmesh/contracts';
import { describeDeadLetter, describeJob } from './format';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const jaeger = (id: string): string => `http://localhost:16686/trace/${id}`;

describe('trace links', () => {
  it('follow the trace id of a job and of a dead letter when a trace viewer is set', () => {
    const job = pb.Job.fromPartial({ id: '7', queue: 'q', name: 'n', traceId: TRACE });
    expect(describeJob(job, jaeger)).toMatch(new RegExp(`^trace id +${TRACE}\\ntrace +http://localhost:16686/trace/${TRACE}$`, 'm'));
    const d = pb.DeadLetter.fromPartial({ id: 'q:7:1', traceId: TRACE, job });
    expect(describeDeadLetter(d, jaeger)).toMatch(new RegExp(`^trace +http://localhost:16686/trace/${TRACE}$`, 'm'));
  });

  it('are left out without a trace viewer, or without a trace id', () => {
    expect(describeJob(pb.Job.fromPartial({ id: '7', traceId: TRACE }))).not.toMatch(/^trace +http/m);
    expect(describeJob(pb.Job.fromPartial({ id: '7' }), jaeger)).not.toMatch(/^trace/m);
    expect(describeDeadLetter(pb.DeadLetter.fromPartial({ id: 'q:7:1' }), jaeger)).not.toMatch(/^trace +http/m);
  });
});
