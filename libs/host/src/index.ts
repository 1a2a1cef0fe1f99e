export * from './host';
export * from './process';
