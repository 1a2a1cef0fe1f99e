export * from './config';
export * from './register';
export * from './start';
export * from './categorize';
export * from './capture';
export * from './replay';
export * from './alerts';
export * from './metrics';
