import { type ChannelCredentials, status } from '@grpc/grpc-js';
import { ConfigError, parseEnv } from '@jobmesh/config';
import { JobmeshClient, tlsCredentials } from '@jobmesh/sdk';
import { COMMANDS, type Handler, UsageError } from './commands';
import { cliEnvSchema } from './config';
import { runConformance } from './conformance';
import { dlq } from './dlq';
import { keys } from './keys';
import { health, stats } from './monitor';
import { top } from './top';
import { runUp } from './up';

const USAGE = `jobmesh — background jobs over gRPC

Usage:
  jobmesh up                                   run every service on this machine (gRPC 127.0.0.1:50051)
  jobmesh queues list|create|update|get|pause|resume|delete [name] [--concurrency N] [--rate-limit 100/1s]
  jobmesh enqueue <queue> <job-name> [--data JSON] [--delay 5s] [--run-at ISO] [--priority N] [--attempts N]
                  [--timeout 30s] [--job-id ID] [--idempotency-key KEY]
  jobmesh get <queue> <job-id>
  jobmesh list <queue> [--state waiting,failed,…] [--limit N] [--page-token T]
  jobmesh cancel <queue> <job-id> [--reason TEXT]
  jobmesh watch <queue> <job-id>
  jobmesh schedules list|upsert|get|delete <queue> [id] [--cron EXPR --tz ZONE | --every 30s] [--name JOB] [--data JSON]
  jobmesh dlq list [filter] [--limit N] [--page-token T]
  jobmesh dlq show <id>
  jobmesh dlq replay (<id>… | filter | --all) [--to QUEUE] [--patch JSON] [--rate N] [--include-replayed]
  jobmesh dlq purge (<id>… | filter | --all) [--older-than 7d]
  jobmesh dlq stats [--queue Q]
  jobmesh dlq quarantine <id>… [--reason TEXT]
  jobmesh dlq release <id>…
  jobmesh dlq watch [--queue Q] [--name N] [--category C]
                  dead letters; filter: [--queue Q] [--name JOB] [--category C] [--since T] [--until T],
                  T an ISO time or how long ago (30m, 2h, 7d). Without ids or a filter, replay and purge
                  need --all
  jobmesh stats [queue]                        queue figures: counts by state, completed/s and failed/s over the last
                                               minute, oldest waiting age, processing p50/p95, workers, paused
  jobmesh health                               every service's status, address, error and figures; exit code 0 when
                                               the system is SERVING, 1 otherwise
  jobmesh top [queue…] [--interval 2s]         the queue figures live, redrawn every interval; q or Ctrl-C quits.
                                               With --json, one JSON line per round instead
  jobmesh keys create --role producer|worker|viewer|admin --queues 'emails,hooks-*' [--id NAME]
                  make an API key: prints the key once, and the line to add to JOBMESH_API_KEYS_FILE
  jobmesh conformance --worker "<command>" [--rule NAME]…
                  start a Jobmesh of its own, run <command> as a remote worker (env JOBMESH_ADDRESS,
                  JOBMESH_QUEUES=conformance) and check it follows the WorkerService protocol

Global flags: --address host:port (env JOBMESH_ADDRESS), --api-key KEY (env JOBMESH_API_KEY),
              --timeout 10s (env JOBMESH_TIMEOUT), --json (machine-readable output, one JSON value per line),
              --dlq-address host:port (env JOBMESH_DLQ_ADDRESS; DeadLetterService, when not at --address),
              --monitor-address host:port (env JOBMESH_MONITOR_ADDRESS; MonitorService, when not at --address),
              --tls (env JOBMESH_TLS=true; TLS trusting the system's roots), --tls-ca FILE (env JOBMESH_TLS_CA;
              TLS trusting this PEM CA), --tls-cert FILE --tls-key FILE (env JOBMESH_TLS_CLIENT_CERT,
              JOBMESH_TLS_CLIENT_KEY; a client certificate for mTLS)
Environment:  JOBMESH_TRACE_UI_URL, e.g. http://localhost:16686/trace/{trace_id}: get and dlq show link a job's trace`;

/** Pulls the global flags out of argv, wherever they stand. */
interface GlobalFlags {
  address?: string;
  dlqAddress?: string;
  monitorAddress?: string;
  apiKey?: string;
  timeout?: string;
  tls?: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  json: boolean;
  help: boolean;
}

function globalFlags(argv: string[]): GlobalFlags & { rest: string[] } {
  const rest: string[] = [];
  const flags: GlobalFlags = { json: false, help: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [name, inline] = a.startsWith('--') ? (a.split(/=(.*)/s, 2) as [string, string | undefined]) : [a, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`${name} needs a value`);
      return v;
    };
    if (name === '--json') flags.json = true;
    else if (name === '--help' || name === '-h') flags.help = true;
    else if (name === '--address') flags.address = value();
    else if (name === '--dlq-address') flags.dlqAddress = value();
    else if (name === '--monitor-address') flags.monitorAddress = value();
    else if (name === '--api-key') flags.apiKey = value();
    else if (name === '--timeout') flags.timeout = value();
    else if (name === '--tls') flags.tls = true;
    else if (name === '--tls-ca') flags.tlsCa = value();
    else if (name === '--tls-cert') flags.tlsCert = value();
    else if (name === '--tls-key') flags.tlsKey = value();
    else rest.push(a);
  }
  return { rest, ...flags };
}

/** MonitorService's commands, registered beside COMMANDS as dlq is (they import commands.ts). */
const MONITOR_COMMANDS: Record<string, Handler> = { stats, health, top };

async function main(argv: string[]): Promise<number> {
  const flags = globalFlags(argv);
  const [command, ...args] = flags.rest;
  if (!command || flags.help || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command || flags.help ? 0 : 2;
  }
  if (command === 'up') {
    await runUp();
    return -1; // keeps running until a signal
  }
  if (command === 'keys') return keys(args, (l) => process.stdout.write(`${l}\n`));
  if (command === 'conformance') {
    let worker: string | undefined;
    const only: string[] = [];
    for (let i = 0; i < args.length; i++) {
      const [name, inline] = args[i]!.split(/=(.*)/s, 2) as [string, string | undefined];
      const value = (): string => {
        const v = inline ?? args[++i];
        if (v === undefined) throw new UsageError(`${name} needs a value`);
        return v;
      };
      if (name === '--worker') worker = value();
      else if (name === '--rule') only.push(value());
      else throw new UsageError(`conformance: unknown argument "${args[i]}"`);
    }
    if (!worker) throw new UsageError('conformance needs --worker "<command>"');
    return runConformance({ worker, only });
  }
  const handler = command === 'dlq' ? dlq : (COMMANDS[command] ?? MONITOR_COMMANDS[command]);
  if (!handler) throw new UsageError(`unknown command "${command}"`);
  const env = parseEnv(cliEnvSchema, { ...process.env, ...(flags.timeout && { JOBMESH_TIMEOUT: flags.timeout }) });
  const address = flags.address ?? env.JOBMESH_ADDRESS;
  const apiKey = flags.apiKey ?? env.JOBMESH_API_KEY;
  const deadLetterAddress = flags.dlqAddress ?? env.JOBMESH_DLQ_ADDRESS;
  const monitorAddress = flags.monitorAddress ?? env.JOBMESH_MONITOR_ADDRESS;
  const tls = { ca: flags.tlsCa ?? env.JOBMESH_TLS_CA, cert: flags.tlsCert ?? env.JOBMESH_TLS_CLIENT_CERT, key: flags.tlsKey ?? env.JOBMESH_TLS_CLIENT_KEY };
  let credentials: ChannelCredentials | undefined;
  try {
    credentials = flags.tls || env.JOBMESH_TLS || tls.ca || tls.cert || tls.key ? tlsCredentials(tls) : undefined;
  } catch (err) {
    throw new ConfigError([(err as Error).message]);
  }
  const client = new JobmeshClient({ address, apiKey, credentials, timeoutMs: env.JOBMESH_TIMEOUT, deadLetterAddress, monitorAddress });
  try {
    const traceUi = env.JOBMESH_TRACE_UI_URL;
    const traceUrl = traceUi ? (traceId: string) => traceUi.replaceAll('{trace_id}', traceId) : undefined;
    const code = await handler(args, { client, deadLetters: client.deadLetters, monitor: client.monitor, json: flags.json, out: (l) => process.stdout.write(`${l}\n`), traceUrl });
    return code ?? 0;
  } finally {
    client.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    const e = err as { code?: number; details?: string; message?: string };
    if (err instanceof UsageError) {
      process.stderr.write(`jobmesh: ${err.message}\nRun jobmesh --help for usage.\n`);
      process.exitCode = 2;
    } else if (err instanceof ConfigError) {
      process.stderr.write(`jobmesh: ${err.message}\n`);
      process.exitCode = 2;
    } else if (typeof e.code === 'number' && e.details !== undefined) {
      const hint = e.code === status.UNAVAILABLE ? ' (is Jobmesh running? start it with npm start, or pass --address)' : '';
      process.stderr.write(`jobmesh: ${status[e.code]}: ${e.details}${hint}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`jobmesh: ${e.message ?? String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
