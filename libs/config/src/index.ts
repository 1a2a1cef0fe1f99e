export * from './durations';
export * from './env';
export * from './config-file';
export * from './http-allow';
export * from './load';
export * from './api-keys-file';
export * from './tls';
export * from './message-pattern';
