// The child process of otlp-sink.ts: an OTLP receiver, answering its parent over the IPC channel.
// argv[2] says which: `count` (otlp-count.ts, lean) or `decode` (@jobmesh/testing's, which decodes
// every request into spans). It exits when the parent disconnects.
import { startOtlpReceiver } from '@jobmesh/testing';
import { startCountingReceiver } from './otlp-count';
import type { SinkCounts, SinkReady } from './otlp-sink';

interface Receiver {
  ready: Omit<SinkReady, 'type'>;
  counts(): Omit<SinkCounts, 'type' | 'id' | 'cpuMs'>;
  close(): Promise<void>;
}

async function start(mode: string | undefined): Promise<Receiver> {
  if (mode === 'count') {
    const r = await startCountingReceiver();
    return { ready: { httpUrl: r.httpUrl }, counts: () => ({ requests: r.requests, otherRequests: r.otherRequests, spans: { ...r.spans } }), close: () => r.close() };
  }
  if (mode !== 'decode') throw new Error(`unknown receiver "${mode}"`);
  const r = await startOtlpReceiver();
  return {
    ready: { httpUrl: r.httpUrl, grpcUrl: r.grpcUrl },
    counts: () => {
      const spans: Record<string, number> = {};
      for (const s of r.spans()) {
        const key = `${s.serviceName ?? 'unknown'} ${s.kind}`;
        spans[key] = (spans[key] ?? 0) + 1;
      }
      return { requests: r.requests, otherRequests: r.otherRequests.length, spans };
    },
    close: () => r.close(),
  };
}

async function main(): Promise<void> {
  const receiver = await start(process.argv[2]);
  const send = (msg: SinkReady | SinkCounts): void => void process.send!(msg);
  process.on('message', (msg: { type?: string; id?: number }) => {
    if (msg.type !== 'counts') return;
    const cpu = process.cpuUsage();
    send({ type: 'counts', id: msg.id ?? 0, ...receiver.counts(), cpuMs: (cpu.user + cpu.system) / 1000 });
  });
  process.once('disconnect', () => void receiver.close().finally(() => process.exit(0)));
  send({ type: 'ready', ...receiver.ready });
}

main().catch((err: unknown) => {
  process.stderr.write(`otlp sink: ${(err as Error).message}\n`);
  process.exit(1);
});
