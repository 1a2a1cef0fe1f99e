// The TCP proxy's faults, against a plain echo server on loopback: pass-through, blackhole (held,
// delivered on heal, no socket closed), drop (RST on open connections, new ones reset until heal)
// and delay (late, in order, also when healed midway).
import { createServer, type Server, type Socket, connect } from 'node:net';
import { eventually } from './eventually';
import { type TcpProxy, startTcpProxy } from './tcp-proxy';

let echo: Server;
let proxy: TcpProxy;
const open: Socket[] = [];

beforeEach(async () => {
  echo = createServer((s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  proxy = await startTcpProxy(`127.0.0.1:${(echo.address() as { port: number }).port}`);
});
afterEach(async () => {
  for (const s of open) s.destroy();
  open.length = 0;
  await proxy.close();
  await new Promise<void>((r) => echo.close(() => r()));
});

/** A connection through the proxy, with what came back and how it ended. */
async function dial(): Promise<{ socket: Socket; received: () => string; ended: Promise<{ error?: string }> }> {
  const socket = connect(proxy.port, '127.0.0.1');
  open.push(socket);
  let data = '';
  socket.on('data', (c: Buffer) => (data += c.toString()));
  const ended = new Promise<{ error?: string }>((r) => {
    let error: string | undefined;
    socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code));
    socket.on('close', () => r({ error }));
  });
  await new Promise<void>((r, j) => socket.once('connect', () => r()).once('error', j));
  return { socket, received: () => data, ended };
}

it('passes data both ways', async () => {
  const c = await dial();
  c.socket.write('hello');
  await eventually(() => c.received() === 'hello', 5_000, 'the echo');
  expect(proxy.accepted()).toBe(1);
  expect(proxy.open()).toBe(1);
});

it('blackhole: nothing passes and no socket closes; heal delivers what was held, in order', async () => {
  const c = await dial();
  proxy.blackhole();
  c.socket.write('a');
  c.socket.write('b');
  const late = await dial();
  late.socket.write('c');
  // Nothing can be observed to arrive; the echo of an unheld write would be back within a few ms.
  const probe = await dial();
  await new Promise((r) => setTimeout(r, 200));
  expect(c.received()).toBe('');
  expect(late.received()).toBe('');
  expect(c.socket.destroyed || late.socket.destroyed || probe.socket.destroyed).toBe(false);
  proxy.heal();
  await eventually(() => c.received() === 'ab' && late.received() === 'c', 5_000, 'the held data');
});

it('drop: open connections are reset (ECONNRESET), new ones are reset while dropping, and work again after heal', async () => {
  const a = await dial();
  const b = await dial();
  a.socket.write('x');
  await eventually(() => a.received() === 'x', 5_000, 'the echo');
  proxy.drop();
  expect(await a.ended).toEqual({ error: 'ECONNRESET' });
  expect(await b.ended).toEqual({ error: 'ECONNRESET' });
  // A new connection is accepted by the kernel and reset at once, before any data passes.
  const during = connect(proxy.port, '127.0.0.1');
  open.push(during);
  const duringEnd = await new Promise<string | undefined>((r) => {
    let code: string | undefined;
    during.on('error', (e: NodeJS.ErrnoException) => (code = e.code));
    during.on('close', () => r(code));
  });
  expect(duringEnd).toBe('ECONNRESET');
  expect(proxy.resets()).toBe(3);
  expect(proxy.open()).toBe(0);
  proxy.heal();
  const after = await dial();
  after.socket.write('y');
  await eventually(() => after.received() === 'y', 5_000, 'the echo after heal');
});

it('delay: every chunk arrives late and in order, also when healed while chunks are still delayed', async () => {
  const c = await dial();
  proxy.delay(300);
  const sentAt = Date.now();
  for (const ch of '12345') c.socket.write(ch);
  await eventually(() => c.received().length > 0, 5_000, 'the first delayed chunk');
  // Out and back: delayed at least once.
  expect(Date.now() - sentAt).toBeGreaterThanOrEqual(290);
  await eventually(() => c.received() === '12345', 5_000, 'every delayed chunk');
  // Healed while chunks wait: what waits goes first, then what comes after.
  c.socket.write('6');
  c.socket.write('7');
  await new Promise((r) => setTimeout(r, 50));
  proxy.heal();
  c.socket.write('8');
  await eventually(() => c.received() === '12345678', 5_000, 'the rest, in order');
});
