export * from './connection';
export * from './keys';
export * from './registry';
export * from './backbone';
export * from './proto-mapping';
export * from './job-mapping';
export * from './cancellation';
export * from './dead-letters';
