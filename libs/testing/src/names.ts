import { randomUUID } from 'node:crypto';

/** A fresh queue name for one test: tests that share a Redis never see each other's jobs. */
export const uniqueQueue = (label = 'q'): string => `${label}-${randomUUID().slice(0, 8)}`;

/** A fresh key prefix for one Jobmesh under test. */
export const uniquePrefix = (): string => `t${randomUUID().slice(0, 8)}`;
