export * from './config';
export * from './figures';
export * from './health';
export * from './register';
export * from './start';
