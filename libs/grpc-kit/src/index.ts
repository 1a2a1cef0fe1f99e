export * from './status';
export * from './rpc';
export * from './server';
export * from './tls';
export * from './dial';
