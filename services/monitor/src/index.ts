export * from './config';
export * from './figures';
export * from './health';
export * from './register';
export * from './start';
export { type Dashboard, type DashboardOptions, dashboardHandler } from './dashboard/dashboard';
