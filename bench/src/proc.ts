// What Linux's /proc tells about the service processes the bench spawned: which pid runs a
// service, its resident set and its CPU time, and what every child uses. Linux only.
import { readFileSync, readdirSync } from 'node:fs';

/**
 * The parent pid and CPU time so far (utime + stime, 10 ms clock ticks, as ms) of `pid`, from
 * /proc/<pid>/stat; throws if it has exited.
 */
function statOf(pid: number | string): { ppid: number; cpuMs: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // pid (comm) state ppid … utime stime: comm may hold spaces and parentheses, so read after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(fields[1]), cpuMs: (Number(fields[11]) + Number(fields[12])) * 10 };
}

/** The pid of this process's child running `main` (spawnService does not tell it). */
export function childPid(main: string): number {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (statOf(entry).ppid === process.pid && readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes(main)) return Number(entry);
    } catch {
      // It exited while we looked: not ours.
    }
  }
  throw new Error(`no child process of the bench runs ${main}`);
}

/** VmRSS and VmHWM (the peak resident set) of `pid`, in MB. */
export function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rss: (kib('VmRSS') * 1024) / 1e6, peak: (kib('VmHWM') * 1024) / 1e6 };
}

/** CPU time `pid` used so far, ms (utime + stime, in clock ticks of 10 ms). */
export function cpuMsOf(pid: number): number {
  return statOf(pid).cpuMs;
}

/**
 * How long the threads of `pid` (`self`: this process) have been runnable but waiting for a CPU,
 * ms: the second field of each /proc/<pid>/task/<tid>/schedstat (ns), added up. Undefined where
 * the kernel keeps no such count.
 */
function waitMsOf(pid: number | 'self'): number | undefined {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[1]);
    return Number.isFinite(ns) ? ns / 1e6 : undefined;
  } catch {
    return undefined;
  }
}

/** A process's CPU time so far and how long it waited for a CPU, ms. */
interface ProcessTimes {
  ms: number;
  waitMs?: number;
}

/** CPU time used so far by this process and by each of its children, and their waits for a CPU, ms. */
export interface CpuSample {
  self: ProcessTimes;
  /** By pid: what the child runs (see `processLabel`) and its times. */
  children: Map<number, ProcessTimes & { label: string }>;
}

/**
 * What a child of the bench runs, as the CPU table names it: `redis`, a service's directory
 * (`scheduler`, `worker-pool`, …) or a bench program (`raw-worker`, `echo-server`, `otlp-sink`).
 */
export function processLabel(cmdline: string[]): string {
  if (/redis-server/.test(cmdline[0] ?? '')) return 'redis';
  const main = cmdline.find((arg) => arg.endsWith('.js')) ?? cmdline[0] ?? '?';
  const service = /services\/([^/]+)\/dist\/main\.js$/.exec(main);
  if (service) return service[1]!;
  return main.replace(/^.*\//, '').replace(/(-main)?\.js$/, '');
}

/**
 * A reading of this process's CPU time and its children's (Linux: utime + stime, 10 ms ticks) and
 * of their waits for a CPU; undefined where there is no /proc to read them from.
 */
export function cpuSample(): CpuSample | undefined {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return undefined;
  }
  const own = process.cpuUsage();
  const children: CpuSample['children'] = new Map();
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const { ppid, cpuMs } = statOf(entry);
      if (ppid !== process.pid) continue;
      const label = processLabel(readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean));
      children.set(Number(entry), { label, ms: cpuMs, waitMs: waitMsOf(Number(entry)) });
    } catch {
      // It exited while we looked: its time is not in this reading.
    }
  }
  return { self: { ms: (own.user + own.system) / 1000, waitMs: waitMsOf('self') }, children };
}

/**
 * CPU ms used between two readings (`cpu`), and ms spent waiting for a CPU (`wait`, where the
 * kernel counts it), by what used them: `bench` (this process) and each child's label, those of
 * one label added up. A child that started after `from` counts from its start; one that ended
 * before `to` is left out (its last ticks are not in `to`).
 */
export function cpuBetween(from: CpuSample, to: CpuSample): { cpu: Record<string, number>; wait?: Record<string, number> } {
  const cpu: Record<string, number> = {};
  const wait: Record<string, number> = {};
  let waits = true;
  const add = (label: string, then: ProcessTimes | undefined, now: ProcessTimes): void => {
    cpu[label] = (cpu[label] ?? 0) + now.ms - (then?.ms ?? 0);
    if (now.waitMs === undefined || (then && then.waitMs === undefined)) waits = false;
    else wait[label] = (wait[label] ?? 0) + now.waitMs - (then?.waitMs ?? 0);
  };
  add('bench', from.self, to.self);
  for (const [pid, now] of to.children) add(now.label, from.children.get(pid), now);
  return { cpu, ...(waits && { wait }) };
}
