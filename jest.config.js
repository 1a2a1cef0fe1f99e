// Tests run from TypeScript sources (ts-jest, transpile only; `tsc -b` type-checks the build).
// @jobmesh/* imports resolve to each package's src so a test sees one copy of every module.
const moduleNameMapper = {
  '^@jobmesh/(contracts|core|config|telemetry|queue|grpc-kit|host|testing|sdk)$': '<rootDir>/libs/$1/src/index.ts',
  '^@jobmesh/(scheduler|worker-pool|dead-letter|monitor)$': '<rootDir>/services/$1/src/index.ts',
  '^@jobmesh/(scheduler|worker-pool|dead-letter|monitor)/testing$': '<rootDir>/services/$1/src/testing.ts',
  '^@jobmesh/cli$': '<rootDir>/cli/src/index.ts',
};
const transform = { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.jest.json' }] };
const common = { testEnvironment: 'node', moduleNameMapper, transform, modulePathIgnorePatterns: ['/dist/'] };

module.exports = {
  // Integration tests start redis-server and gRPC servers; a per-project testTimeout is ignored by jest.
  testTimeout: 60_000,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/{libs,services,cli}/**/src/**/*.test.ts'] },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/{libs,services,cli}/**/test/**/*.test.ts', '<rootDir>/test/**/*.test.ts'],
    },
  ],
};
