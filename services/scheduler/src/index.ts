export * from './config';
export * from './register';
export * from './start';
