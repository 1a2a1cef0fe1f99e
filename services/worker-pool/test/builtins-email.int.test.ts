import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pb from '@jobmesh/contracts';
import { SMTPServer } from 'smtp-server';
import type { RunningWorkerPool } from '../src';
import { eventually, type PoolHarness, startPoolHarness, uniqueQueue } from '../src/testing';

/** A message as the SMTP server received it: the envelope and the raw RFC 5322 text. */
interface Received {
  from: string;
  to: string[];
  raw: string;
}

/** Recipients whose local part starts with this are refused at RCPT TO with 550. */
const REFUSED = 'refused';

const received: Received[] = [];
const rcptAttempts: string[] = [];
let smtp: SMTPServer;
let smtpUrl: string;

beforeAll(async () => {
  smtp = new SMTPServer({
    secure: false,
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onRcptTo(address, _session, callback) {
      rcptAttempts.push(address.address);
      if (!address.address.startsWith(REFUSED)) return callback();
      return callback(Object.assign(new Error(`5.1.1 <${address.address}>: mailbox unavailable`), { responseCode: 550 }));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const mailFrom = session.envelope.mailFrom;
        received.push({
          from: mailFrom ? mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString(),
        });
        callback();
      });
    },
  });
  smtp.listen(0, '127.0.0.1');
  await once(smtp.server, 'listening');
  smtpUrl = `smtp://127.0.0.1:${(smtp.server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => smtp.close(resolve));
});

/** The job once it completed or failed (`finishedAt` set: GetJob reads the job and its state in two steps). */
async function finished(h: PoolHarness, queue: string, id: string): Promise<pb.Job> {
  return eventually(
    async () => {
      const j = await h.client.getJob(queue, id);
      const final = j.state === pb.JobState.JOB_STATE_COMPLETED || j.state === pb.JobState.JOB_STATE_FAILED;
      return final && j.finishedAt !== undefined && j;
    },
    15_000,
    `job ${id} to finish`,
  );
}

async function served(pool: RunningWorkerPool, queue: string): Promise<void> {
  await eventually(() => pool.worker.pool.status().some((s) => s.queue === queue), 10_000, `the pool to serve ${queue}`);
}

/** A raw message's headers (names lower-cased, folded lines joined) and body. */
function parse(raw: string): { headers: Record<string, string>; body: string } {
  const split = raw.indexOf('\r\n\r\n');
  const headers: Record<string, string> = {};
  for (const line of raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ').split('\r\n')) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { headers, body: raw.slice(split + 4) };
}

/** The message whose Subject is `subject`; subjects are unique per test. */
function messageWithSubject(subject: string): (Received & ReturnType<typeof parse>) | undefined {
  const m = received.find((r) => parse(r.raw).headers.subject === subject);
  return m && { ...m, ...parse(m.raw) };
}

describe('with JOBMESH_SMTP_URL and JOBMESH_SMTP_FROM set', () => {
  let h: PoolHarness;
  let pool: RunningWorkerPool;

  beforeAll(async () => {
    h = await startPoolHarness();
    // No processors of its own: the pool gets email.send from the built-ins, as a deployment does.
    pool = await h.startPool([], { JOBMESH_SMTP_URL: smtpUrl, JOBMESH_SMTP_FROM: 'Jobmesh <jobmesh@example.test>' });
  });
  afterAll(async () => {
    await h.stop();
  });

  async function newQueue(label: string): Promise<string> {
    const queue = uniqueQueue(`email-${label}`);
    await h.client.createQueue({ queue: { name: queue } });
    await served(pool, queue);
    return queue;
  }

  it('sends the message to every recipient with its subject and text, from the default sender', async () => {
    const queue = await newQueue('send');
    const subject = `Welcome ${queue}`;
    const { job } = await h.client.enqueueJob({
      queue,
      job: { name: 'email.send', data: { to: ['ada@example.test', 'bob@example.test'], subject, text: 'Hello from jobmesh.' } },
    });

    const done = await finished(h, queue, job!.id);

    expect(done.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expect(done.result).toEqual({ messageId: expect.stringMatching(/^<.+@.+>$/), accepted: ['ada@example.test', 'bob@example.test'], rejected: [] });
    const message = messageWithSubject(subject)!;
    expect(message).toBeDefined();
    expect(message.from).toBe('jobmesh@example.test');
    expect(message.to).toEqual(['ada@example.test', 'bob@example.test']);
    expect(message.headers).toMatchObject({
      from: 'Jobmesh <jobmesh@example.test>',
      to: 'ada@example.test, bob@example.test',
      'message-id': (done.result as { messageId: string }).messageId,
      'content-type': 'text/plain; charset=utf-8',
    });
    expect(message.body).toBe('Hello from jobmesh.\r\n');
  });

  it("uses the job's own from address over the default sender", async () => {
    const queue = await newQueue('from');
    const subject = `Receipt ${queue}`;
    const { job } = await h.client.enqueueJob({
      queue,
      job: { name: 'email.send', data: { to: 'ada@example.test', subject, html: '<p>Paid</p>', from: 'billing@example.test' } },
    });

    const done = await finished(h, queue, job!.id);

    expect(done.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    const message = messageWithSubject(subject)!;
    expect(message.from).toBe('billing@example.test');
    expect(message.headers.from).toBe('billing@example.test');
    expect(message.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(message.body).toContain('<p>Paid</p>');
  });

  it('fails a job without `to` at once, naming the field', async () => {
    const queue = await newQueue('no-to');
    const { job } = await h.client.enqueueJob({ queue, job: { name: 'email.send', data: { subject: 'Nobody', text: 'x' }, options: { attempts: 3 } } });

    const failed = await finished(h, queue, job!.id);

    expect(failed.state).toBe(pb.JobState.JOB_STATE_FAILED);
    expect(failed.attemptsMade).toBe(1);
    expect(failed.failureReason).toBe('email.send: invalid job data: to: is required');
  });

  it('fails at once, without retries, when the server refuses the recipient with 550', async () => {
    const queue = await newQueue('550');
    const to = `${REFUSED}-${queue}@example.test`;
    const { job } = await h.client.enqueueJob({
      queue,
      job: {
        name: 'email.send',
        data: { to, subject: `Bounce ${queue}`, text: 'x' },
        options: { attempts: 3, backoff: { kind: pb.BackoffKind.BACKOFF_KIND_FIXED, delay: { seconds: 0, nanos: 100_000_000 } } },
      },
    });

    const failed = await finished(h, queue, job!.id);

    expect(failed.state).toBe(pb.JobState.JOB_STATE_FAILED);
    expect(failed.attemptsMade).toBe(1);
    expect(failed.failureReason).toMatch(/^email\.send: .*550.*mailbox unavailable/);
    expect(rcptAttempts.filter((a) => a === to)).toHaveLength(1);
    expect(messageWithSubject(`Bounce ${queue}`)).toBeUndefined();
  });
});

describe('SMTP settings from the environment and the config file', () => {
  let h: PoolHarness;
  let dir: string;
  const unconfigured = uniqueQueue('email-unconfigured');
  const fromFile = uniqueQueue('email-config-file');

  beforeAll(async () => {
    h = await startPoolHarness();
    for (const name of [unconfigured, fromFile]) await h.client.createQueue({ queue: { name } });

    // Nothing listens on the file's SMTP port, so only JOBMESH_SMTP_URL's server can deliver.
    const closed = createServer().listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const deadPort = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    dir = mkdtempSync(join(tmpdir(), 'jobmesh-email-'));
    const config = join(dir, 'jobmesh.config.yaml');
    writeFileSync(config, `smtp:\n  url: smtp://127.0.0.1:${deadPort}\n  from: config-file@example.test\n`);

    const [bare, withFile] = await Promise.all([
      h.startPool([], { JOBMESH_WORKER_QUEUES: unconfigured }),
      h.startPool([], { JOBMESH_WORKER_QUEUES: fromFile, JOBMESH_CONFIG: config, JOBMESH_SMTP_URL: smtpUrl }),
    ]);
    await served(bare, unconfigured);
    await served(withFile, fromFile);
  });
  afterAll(async () => {
    await h.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('fails email.send jobs at once, saying how to configure SMTP, when no SMTP URL is set', async () => {
    const { job } = await h.client.enqueueJob({
      queue: unconfigured,
      job: { name: 'email.send', data: { to: 'ada@example.test', subject: 'x', text: 'x', from: 'a@example.test' }, options: { attempts: 3 } },
    });

    const failed = await finished(h, unconfigured, job!.id);

    expect(failed.state).toBe(pb.JobState.JOB_STATE_FAILED);
    expect(failed.attemptsMade).toBe(1);
    expect(failed.failureReason).toBe('email.send: no SMTP server is configured; set JOBMESH_SMTP_URL or smtp.url in the config file');
  });

  it("sends through JOBMESH_SMTP_URL over the file's smtp.url, from the file's smtp.from", async () => {
    const subject = `Override ${fromFile}`;
    const { job } = await h.client.enqueueJob({ queue: fromFile, job: { name: 'email.send', data: { to: 'ada@example.test', subject, text: 'x' } } });

    const done = await finished(h, fromFile, job!.id);

    expect(done.state).toBe(pb.JobState.JOB_STATE_COMPLETED);
    expect(messageWithSubject(subject)?.from).toBe('config-file@example.test');
  });
});
