export * from './redis';
export * from './eventually';
export * from './raw-redis';
export * from './redis-proxy';
export * from './names';
export * from './deferred';
export * from './use-harness';
export * from './otlp-receiver';
export { renderWaterfall, type WaterfallOptions } from './waterfall';
