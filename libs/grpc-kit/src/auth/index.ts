export * from './api-keys';
export * from './permissions';
