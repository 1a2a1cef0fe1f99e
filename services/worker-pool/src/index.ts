export * from './config';
export * from './processors';
export * from './register';
export * from './start';
export * from './worker-pool';
