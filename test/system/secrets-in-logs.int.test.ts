// The scheduler, a worker-pool and the dead-letter service as separate OS processes at LOG_LEVEL
// debug, with known secrets everywhere they go in: a Redis password in REDIS_URL, an SMTP password
// in JOBMESH_SMTP_URL, an API key in JOBMESH_API_KEY and on every call, a webhook secret, an
// http.request job's authorization header. Jobs fail, are dead-lettered, and their alerts go to
// a webhook that answers 500 with the credentials it saw echoed in its body (which the dead-letter
// service puts into its log line). None of the secrets may appear in anything the processes wrote.
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pb from '@jobmesh/contracts';
import { JobmeshClient } from '@jobmesh/sdk';
import { connectRedis, type RedisHandle, startRedis } from '@jobmesh/testing';
import { eventually, killAll, type ServiceProcess, startService, stopService } from './fixtures/services';

const SECRETS = {
  redisPassword: `redis-pw-${randomUUID()}`,
  smtpPassword: `smtp-pw-${randomUUID()}`,
  apiKey: `jm_test.api-key-${randomUUID()}`,
  webhookSecret: `webhook-secret-${randomUUID()}`,
  httpAuthorization: `http-auth-${randomUUID()}`,
};

let redis: RedisHandle;
let dir: string;
let target: Server;
let targetPort: number;
let webhook: Server;
/** Bodies the webhook got (dead-letter alerts). */
const alerts: string[] = [];
let services: ServiceProcess[] = [];
let client: JobmeshClient;

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

beforeAll(async () => {
  redis = await startRedis({ own: true });
  const admin = connectRedis(redis.url, { maxRetriesPerRequest: 3 });
  await admin.config('SET', 'requirepass', SECRETS.redisPassword);
  admin.disconnect();
  const redisUrl = redis.url.replace('redis://', `redis://:${SECRETS.redisPassword}@`);
  dir = mkdtempSync(join(tmpdir(), 'jobmesh-system-secrets-'));

  // The http.request target: fails every call, so the job is dead-lettered with its data.
  target = createServer((_req, res) => res.writeHead(500).end('down'));
  targetPort = await listen(target);
  // A webhook that refuses the alert and quotes the credentials in the job it was sent.
  webhook = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      alerts.push(body);
      const seen = /"authorization":"([^"]*)"/.exec(body)?.[1] ?? 'none';
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`refused: got authorization ${seen}`);
    });
  });
  const webhookPort = await listen(webhook);
  // Nothing listens there: email.send fails to connect, with the SMTP URL in its settings.
  const closed = createServer();
  const smtpPort = await listen(closed);
  closed.close();
  await once(closed, 'close');

  const common = { REDIS_URL: redisUrl, JOBMESH_REDIS_PREFIX: `sec-${randomUUID().slice(0, 8)}`, LOG_LEVEL: 'debug', JOBMESH_API_KEY: SECRETS.apiKey };
  const scheduler = await startService('scheduler', common, dir);
  services.push(scheduler);
  services.push(await startService('worker-pool', { ...common, JOBMESH_SMTP_URL: `smtp://mailer:${SECRETS.smtpPassword}@127.0.0.1:${smtpPort}` }, dir));
  services.push(
    await startService(
      'dead-letter',
      {
        ...common,
        JOBMESH_SCHEDULER_ADDRESS: scheduler.grpcAddress,
        JOBMESH_DLQ_SWEEP_INTERVAL: '200ms',
        JOBMESH_DLQ_WEBHOOK_CRITICAL: `http://127.0.0.1:${webhookPort}/alerts`,
        JOBMESH_DLQ_WEBHOOK_SECRET: SECRETS.webhookSecret,
        JOBMESH_DLQ_WEBHOOK_ATTEMPTS: '2',
        JOBMESH_DLQ_WEBHOOK_BACKOFF: '100ms',
      },
      dir,
    ),
  );
  client = new JobmeshClient({ address: scheduler.grpcAddress, apiKey: SECRETS.apiKey });
});

afterAll(async () => {
  client?.close();
  await killAll();
  for (const s of [target, webhook]) {
    s?.closeAllConnections();
    s?.close();
  }
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('writes none of the secrets it was given to any log, at debug level, through failures, dead letters and webhook errors', async () => {
  const queue = `secrets-${randomUUID().slice(0, 8)}`;
  const pool = services.find((s) => s.kind === 'worker-pool')!;
  const deadLetter = services.find((s) => s.kind === 'dead-letter')!;
  await client.createQueue({
    queue: { name: queue, deadLetter: { rules: [{ messagePattern: '.', category: 'LEAK_CHECK', severity: pb.Severity.SEVERITY_CRITICAL }] } },
  });
  await eventually(() => pool.logs().some((l) => l.msg === 'serving queue' && l.queue === queue), 10_000, `the worker-pool to serve ${queue}`);

  const url = `http://127.0.0.1:${targetPort}/hook`;
  await client.enqueueJob({
    queue,
    job: { name: 'http.request', data: { url, headers: { authorization: `Bearer ${SECRETS.httpAuthorization}` }, body: { hi: 1 } }, options: { attempts: 1 } },
  });
  await client.enqueueJob({ queue, job: { name: 'email.send', data: { to: 'a@example.test', subject: 'hi', text: 'x', from: 'b@example.test' }, options: { attempts: 1 } } });
  // A call that fails (NOT_FOUND), carrying the API key in its metadata.
  await expect(client.getJob(queue, 'no-such-job')).rejects.toThrow();

  // Both dead letters alerted, and the webhook's refusal quoting the http.request's authorization was logged.
  await eventually(() => alerts.length >= 2, 20_000, 'two dead-letter alerts');
  const refusal = await eventually(
    () => deadLetter.logs().find((l) => String(l.msg).startsWith('dead-letter webhook not delivered') && String(l.reason).includes('got authorization Bearer')),
    20_000,
    'the dead-letter service to log the webhook refusal',
  );
  expect(alerts.some((a) => a.includes(SECRETS.httpAuthorization))).toBe(true);
  expect(String(refusal.reason)).toContain('got authorization Bearer [REDACTED]');

  await Promise.all(services.map((s) => stopService(s)));
  for (const s of services) {
    const output = s.output();
    expect(output.length).toBeGreaterThan(0);
    for (const [name, secret] of Object.entries(SECRETS)) {
      if (output.includes(secret)) throw new Error(`${s.kind}'s log holds ${name}:\n${output.split('\n').filter((l) => l.includes(secret)).join('\n')}`);
    }
  }
  services = [];
});
