import { Writable } from 'node:stream';
import { context, trace, TraceFlags } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { createLogger, REDACTED, scrubSecrets } from './logger';

/** A logger writing into `lines`, one parsed JSON object per line. */
function capture(): { lines: Record<string, unknown>[]; logger: ReturnType<typeof createLogger> } {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { lines, logger: createLogger({ name: 'test', destination }) };
}

describe('createLogger and the active span', () => {
  const manager = new AsyncLocalStorageContextManager();
  beforeAll(() => context.setGlobalContextManager(manager.enable()));
  afterAll(() => {
    manager.disable();
    context.disable();
  });

  it('writes the trace and span id of the span a line is written in', async () => {
    const { lines, logger } = capture();
    const span = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.SAMPLED };
    await context.with(trace.setSpanContext(context.active(), span), async () => {
      await Promise.resolve(); // still the span's context after an await
      logger.info('inside');
    });
    logger.info('outside');
    expect(lines[0]).toMatchObject({ msg: 'inside', trace_id: span.traceId, span_id: span.spanId });
    expect(lines[1]).toMatchObject({ msg: 'outside' });
    expect(lines[1]).not.toHaveProperty('trace_id');
    expect(lines[1]).not.toHaveProperty('span_id');
  });

  it('writes no ids for an invalid span context', () => {
    const { lines, logger } = capture();
    const invalid = { traceId: '00000000000000000000000000000000', spanId: '0000000000000000', traceFlags: TraceFlags.NONE };
    context.with(trace.setSpanContext(context.active(), invalid), () => logger.info('x'));
    expect(lines[0]).not.toHaveProperty('trace_id');
  });
});

describe('createLogger and secrets', () => {
  it('redacts authorization headers and metadata, API keys, webhook secrets, SMTP URLs and passwords wherever they sit', () => {
    const { lines, logger } = capture();
    logger.info(
      {
        headers: { authorization: 'Bearer h-secret', 'proxy-authorization': 'Basic p-secret', 'x-api-key': 'k-secret', accept: 'text/plain' },
        metadata: { authorization: 'Bearer m-secret' },
        env: { JOBMESH_API_KEY: 'jm1.api-secret', JOBMESH_DLQ_WEBHOOK_SECRET: 'w-secret', JOBMESH_SMTP_URL: 'smtps://u:s-secret@mail.test', LOG_LEVEL: 'debug' },
        config: { smtp: { url: 'smtps://u:c-secret@mail.test', from: 'a@b.test' } },
        job: { data: { headers: { Authorization: 'j-secret' } } },
        transport: { auth: { user: 'u', pass: 'pass-secret' } },
      },
      'the lot',
    );
    const text = JSON.stringify(lines[0]);
    for (const secret of ['h-secret', 'p-secret', 'k-secret', 'm-secret', 'api-secret', 'w-secret', 's-secret', 'c-secret', 'j-secret', 'pass-secret']) expect(text).not.toContain(secret);
    expect(lines[0]).toMatchObject({
      headers: { authorization: REDACTED, accept: 'text/plain' },
      env: { JOBMESH_API_KEY: REDACTED, LOG_LEVEL: 'debug' },
      config: { smtp: { url: REDACTED, from: 'a@b.test' } },
      transport: { auth: { user: 'u', pass: REDACTED } },
    });
  });

  it('cuts URL passwords and Bearer credentials out of messages, fields and errors, keeping the rest', () => {
    const { lines, logger } = capture();
    const err = Object.assign(new Error('cannot reach redis://:r-secret@10.0.0.5:6379/0 with Bearer t-secret'), { command: { name: 'set', args: ['k', 'payload-secret'] } });
    logger.warn({ err, url: 'https://bob:u-secret@example.test/hook' }, 'connecting to smtps://mailer:m-secret@mail.test:465');
    logger.error(new Error('lost smtp://x:e-secret@mail.test'));
    const text = JSON.stringify(lines);
    for (const secret of ['r-secret', 't-secret', 'payload-secret', 'u-secret', 'm-secret', 'e-secret']) expect(text).not.toContain(secret);
    expect(lines[0]).toMatchObject({
      msg: `connecting to smtps://mailer:${REDACTED}@mail.test:465`,
      url: `https://bob:${REDACTED}@example.test/hook`,
      err: { message: `cannot reach redis://:${REDACTED}@10.0.0.5:6379/0 with Bearer ${REDACTED}`, command: { name: 'set', args: REDACTED } },
    });
    expect(lines[1]).toMatchObject({ msg: `lost smtp://x:${REDACTED}@mail.test`, err: { message: `lost smtp://x:${REDACTED}@mail.test` } });
  });

  it('leaves a plain err string and ordinary URLs alone', () => {
    const { lines, logger } = capture();
    logger.warn({ err: 'ECONNREFUSED', target: 'http://127.0.0.1:8080/x' }, 'worker error');
    expect(lines[0]).toMatchObject({ err: 'ECONNREFUSED', target: 'http://127.0.0.1:8080/x', msg: 'worker error' });
  });
});

describe('scrubSecrets', () => {
  it('keeps the user and host of a URL and drops only its password', () => {
    expect(scrubSecrets('redis://default:pw@redis.internal:6379')).toBe(`redis://default:${REDACTED}@redis.internal:6379`);
    expect(scrubSecrets('authorization: Basic dXNlcjpwdw==')).toBe(`authorization: Basic ${REDACTED}`);
    expect(scrubSecrets('redis://redis.internal:6379')).toBe('redis://redis.internal:6379');
  });
});
