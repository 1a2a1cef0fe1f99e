import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { type HttpAllowDestination, type HttpAllowRule, queueGlobMatches } from '@jobmesh/config';
import type { Agent, buildConnector, Dispatcher } from 'undici';
import { internalAddressReason } from './internal-addresses';

/** Resolves a host name to its addresses, as dns.lookup(name, { all: true }) does. Tests inject a stub. */
export type Resolver = (hostname: string) => Promise<ReadonlyArray<{ address: string; family: number }>>;

const systemResolver: Resolver = (hostname) => lookup(hostname, { all: true });

/**
 * undici, loaded on the first http.request job rather than at start-up: its 110 modules and
 * nodemailer's (email-send.ts) were 8.5 MB of an idle worker-pool's 123.6 MB, over issue 14's
 * 120 MB, in a process that may never send a request.
 */
export function undici(): typeof import('undici') {
  return require('undici') as typeof import('undici');
}

/**
 * A connection `http.request` refuses to open. Its message says which host, which address and
 * why, and how to permit it; the processor fails the job with it, unrecoverably.
 */
export class DestinationRefusedError extends Error {
  override readonly name = 'DestinationRefusedError';
}

/**
 * Decides whether `http.request` may connect to `address` (which `host`, as the URL names it,
 * resolved to) on `port`: undefined if it may, else the refusal's reason. Public addresses always
 * may; internal ones (loopback, private, link-local, metadata, …) only through an allow-list
 * destination.
 */
export function refusalReason(host: string, port: number, address: string, allow: readonly HttpAllowDestination[]): string | undefined {
  const reason = internalAddressReason(address);
  if (reason === undefined || allow.some((d) => allows(d, host, port, address))) return undefined;
  const literal = isIP(host) !== 0;
  const subject = literal ? `${address} is ${reason}` : `${host} resolves to ${address}, which is ${reason}`;
  const entry = `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  return `${subject}; add "${entry}" to processors.http_request.allow to permit it`;
}

function allows(d: HttpAllowDestination, host: string, port: number, address: string): boolean {
  if (d.port !== undefined && d.port !== port) return false;
  if (d.kind === 'host') return d.host === host.toLowerCase().replace(/\.$/, '');
  const list = new BlockList();
  list.addSubnet(d.address, d.prefix, d.family);
  const family = isIP(address) === 4 ? 'ipv4' : 'ipv6';
  return list.check(address, family);
}

export interface HttpDestinationSettings {
  /** Refuse internal destinations (production mode). */
  guard: boolean;
  allow: readonly HttpAllowRule[];
  resolve?: Resolver;
}

/**
 * The undici dispatchers `http.request` sends through: without the guard one plain Agent; with it
 * an Agent per distinct allow-list (queues whose rules match alike share one), whose connector
 * resolves the host itself, checks every address it got, and connects to the checked address, so
 * what is checked is what is connected to (no second lookup a rebinding DNS could answer
 * differently). Each new connection is checked, so each redirect to another origin is too.
 */
export class HttpDestinations {
  /** Made on first use, as undici is loaded. */
  private open?: Agent;
  private readonly guarded = new Map<string, Agent>();

  constructor(private readonly settings: HttpDestinationSettings) {}

  dispatcherFor(queue: string): Dispatcher {
    const { Agent } = undici();
    if (!this.settings.guard) return (this.open ??= new Agent());
    const rules = this.settings.allow.map((r, i) => [r, i] as const).filter(([r]) => r.queues.some((g) => queueGlobMatches(g, queue)));
    const key = rules.map(([, i]) => i).join(',');
    let agent = this.guarded.get(key);
    if (!agent) {
      agent = new Agent({ connect: guardedConnector(rules.flatMap(([r]) => r.to), this.settings.resolve ?? systemResolver) });
      this.guarded.set(key, agent);
    }
    return agent;
  }
}

function guardedConnector(allow: readonly HttpAllowDestination[], resolve: Resolver): buildConnector.connector {
  const base = undici().buildConnector({});
  return (opts, callback) => {
    const host = opts.hostname.replace(/^\[|\]$/g, '');
    const port = Number(opts.port) || (opts.protocol === 'https:' ? 443 : 80);
    checkedAddresses(host, port, allow, resolve).then(
      (addresses) => {
        // In the resolver's order, the next one if a connection fails, as net's own lookup would.
        const attempt = (i: number): void =>
          base({ ...opts, hostname: addresses[i]! }, (err, socket) => {
            if (err && i + 1 < addresses.length) attempt(i + 1);
            else if (err) callback(err, null);
            else callback(null, socket!);
          });
        attempt(0);
      },
      (err: Error) => callback(err, null),
    );
  };
}

/** The addresses `host` stands for, every one checked; refuses them all if one is refused. */
async function checkedAddresses(host: string, port: number, allow: readonly HttpAllowDestination[], resolve: Resolver): Promise<string[]> {
  const addresses = isIP(host) !== 0 ? [host] : (await resolve(host)).map((a) => a.address);
  if (addresses.length === 0) throw new Error(`${host} resolves to no address`);
  for (const address of addresses) {
    const reason = refusalReason(host, port, address, allow);
    if (reason !== undefined) throw new DestinationRefusedError(reason);
  }
  return addresses;
}
