export * from './redis';
export * from './eventually';
