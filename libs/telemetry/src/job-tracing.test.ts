import { trace } from '@opentelemetry/api';
import { contextOf, formatTraceparent, parseTraceparent, startAttemptSpan, startCaptureSpan, startEnqueueSpan, startServerSpan } from './job-tracing';

const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('traceparent strings', () => {
  it('parses a valid one into a remote span context and formats it back', () => {
    const sc = parseTraceparent(TP, 'congo=t61rcWkgMzE');
    expect(sc).toMatchObject({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1, isRemote: true });
    expect(sc?.traceState?.get('congo')).toBe('t61rcWkgMzE');
    expect(formatTraceparent(sc!)).toBe(TP);
    expect(formatTraceparent({ ...sc!, traceFlags: 0 })).toBe(TP.replace(/01$/, '00'));
  });

  it.each([
    ['empty', ''],
    ['not hex', '00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01'],
    ['short span id', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01'],
    ['all-zero trace id', `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`],
    ['all-zero span id', `00-4bf92f3577b34da6a3ce929d0e0e4736-${'0'.repeat(16)}-01`],
    ['version ff', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
  ])('refuses %s', (_what, tp) => {
    expect(parseTraceparent(tp)).toBeUndefined();
    expect(trace.getSpanContext(contextOf(tp))).toBeUndefined();
  });

  it('gives a context whose parent is the span it names', () => {
    expect(trace.getSpanContext(contextOf(TP))?.spanId).toBe('00f067aa0ba902b7');
  });
});

describe('without a started SDK', () => {
  it('makes no span and passes the caller’s traceparent through unchanged', () => {
    expect(startServerSpan('/jobmesh.v1.SchedulerService/EnqueueJob', TP, undefined)).toBeUndefined();
    const enqueue = startEnqueueSpan('q', [{ name: 'a' }, { name: 'b' }], TP);
    expect(enqueue.traceparents).toEqual([TP, TP]);
    const attempt = startAttemptSpan({ queue: 'q', jobId: '1', name: 'a', attempt: 1, maxAttempts: 1, traceparent: TP });
    expect(attempt.traceparent).toBe(TP);
    expect(trace.getSpan(attempt.context)).toBeUndefined();
    expect(startCaptureSpan({ queue: 'q', jobId: '1', name: 'a', category: 'C', severity: 'high', traceparent: TP, failedAt: 0 }).traceparent).toBe(TP);
  });
});
