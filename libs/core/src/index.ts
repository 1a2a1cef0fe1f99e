export * from './errors';
export * from './duration';
export * from './states';
export * from './options';
export * from './backoff';
export * from './validation';
export * from './job-errors';
export * from './within';
