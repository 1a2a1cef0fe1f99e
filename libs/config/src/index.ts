export * from './durations';
export * from './env';
export * from './config-file';
export * from './load';
export * from './message-pattern';
