export * from './status';
export * from './rpc';
export * from './server';
export * from './auth';
