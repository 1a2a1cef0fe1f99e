export * from './status';
export * from './rpc';
export * from './server';
export * from './auth';
export * from './tls';
export * from './dial';
