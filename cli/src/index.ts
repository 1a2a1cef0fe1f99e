export { up, type UpHandle } from './up';
export { NO_REDIS_HELP } from './local-redis';
