import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Seconds buckets for request and job durations, 1 ms to 5 min. */
export const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/**
 * A registry with Node's default process metrics (prefixed `jobmesh_`). Every service of one
 * process registers its metrics on the same registry, so `jobmesh up` serves them together.
 */
export function createRegistry(opts: { defaultMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'jobmesh_' });
  return registry;
}

/** Returns the metric of that name if it is registered already, else creates it. */
export function counter<T extends string>(registry: Registry, name: string, help: string, labelNames: readonly T[] = []): Counter<T> {
  return (registry.getSingleMetric(name) as Counter<T> | undefined) ?? new Counter({ name, help, labelNames, registers: [registry] });
}

export function gauge<T extends string>(registry: Registry, name: string, help: string, labelNames: readonly T[] = []): Gauge<T> {
  return (registry.getSingleMetric(name) as Gauge<T> | undefined) ?? new Gauge({ name, help, labelNames, registers: [registry] });
}

export function histogram<T extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly T[] = [],
  buckets: number[] = DURATION_BUCKETS,
): Histogram<T> {
  return (
    (registry.getSingleMetric(name) as Histogram<T> | undefined) ??
    new Histogram({ name, help, labelNames, buckets, registers: [registry] })
  );
}
