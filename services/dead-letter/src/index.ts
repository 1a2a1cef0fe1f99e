export * from './config';
export * from './register';
export * from './start';
export * from './store';
export * from './categorize';
export * from './capture';
export * from './replay';
