// ESLint holds Jobmesh's package boundaries (docs/architecture.md); it is not a style linter, so
// the only rules here are about what may import what, plus no-console in library and service code.
// No rule needs type information, so the parser runs without a `project`: files are parsed one by
// one, never type-checked.
//
// A rule's options are not merged across config blocks: for the files it matches, a later block
// replaces an earlier one's no-restricted-imports options. So blocks go from general to specific,
// and each one is built by boundary() to hold everything that applies to its files.
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import tseslint from 'typescript-eslint';

// @typescript-eslint's no-restricted-imports is ESLint's, also covering `import x = require('…')`.
const RULE = '@typescript-eslint/no-restricted-imports';

const workspaces = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8')).workspaces;
/** Package names of the services (services/*), e.g. @jobmesh/scheduler. */
const SERVICES = workspaces
  .filter((dir) => dir.startsWith('services/'))
  .map((dir) => ({ dir, name: JSON.parse(readFileSync(new URL(`./${dir}/package.json`, import.meta.url), 'utf8')).name }));
const escape = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const anyOf = (names) => `(${names.map(escape).join('|')})`;

// Test code: test folders, *.test.ts, and the services' harness modules (@jobmesh/<svc>/testing),
// which build on each other (worker-pool's starts a scheduler harness, dead-letter's a pool one).
const TEST = ['**/test/**', '**/*.test.ts', 'services/*/src/testing.ts'];

// ---- restriction sets: { paths, patterns } for no-restricted-imports ----

const RAW_QUEUE_MESSAGE =
  "BullMQ and Redis are libs/queue's business: use its vocabulary (JobProducer, JobAdmin, DeadLetterStore, …); " +
  'tests use @jobmesh/testing';
/** bullmq and ioredis, in all but libs/queue, libs/testing and bench. */
const RAW_QUEUE = {
  paths: [
    { name: 'bullmq', message: RAW_QUEUE_MESSAGE },
    { name: 'ioredis', message: RAW_QUEUE_MESSAGE },
  ],
  patterns: [{ regex: '^(bullmq|ioredis)/', message: RAW_QUEUE_MESSAGE }],
};

/** The same bullmq and ioredis, reached by the forms no-restricted-imports does not see: `import('bullmq')`,
 * `require('ioredis')` and the type `import('bullmq').Queue`. A no-restricted-syntax selector each, over
 * the same sources (the package or a path into it). */
const RAW_QUEUE_SOURCE = '/^(bullmq|ioredis)(\\/|$)/';
const RAW_QUEUE_SYNTAX = [
  { selector: `ImportExpression[source.value=${RAW_QUEUE_SOURCE}]`, message: RAW_QUEUE_MESSAGE },
  {
    selector: `CallExpression[callee.type='Identifier'][callee.name='require'][arguments.0.value=${RAW_QUEUE_SOURCE}]`,
    message: RAW_QUEUE_MESSAGE,
  },
  { selector: `TSImportType[source.value=${RAW_QUEUE_SOURCE}]`, message: RAW_QUEUE_MESSAGE },
];

const DEEP_MESSAGE =
  "Import another package by its name (@jobmesh/<pkg>, in tests also @jobmesh/<service>/testing), never by a path into its src, test or dist: what its index exports is its API";
/** Deep imports, everywhere. Relative ones are matched by their text: a climb (../) that then reaches a
 * top-level package folder, or goes down through some folder's src, test or dist. So ../src/testing
 * (from a package's test/) and ../../test/manual-clock (from its src/remote/) stay inside the package
 * and pass, while ../../worker-pool/src/index (from services/scheduler/src) does not. */
const DEEP = {
  patterns: [
    { regex: '^@jobmesh/[^/]+/(src|test|dist)(/|$)', message: DEEP_MESSAGE },
    {
      // ../ once or more, then a top-level folder (libs/x, services/x, cli, …) or a src/test/dist below a name
      regex: '^(\\.\\./)+((libs|services|examples)/|(cli|bench)(/|$)|([^./][^/]*/)+(src|test|dist)(/|$))',
      message: DEEP_MESSAGE,
    },
  ],
};

const HARNESS_MESSAGE = 'The @jobmesh/<service>/testing harnesses are for test code only (test/, *.test.ts)';
/** The services' test harnesses, in all non-test code. */
const HARNESS = {
  patterns: [{ regex: `^${anyOf(SERVICES.map((s) => s.name))}/testing$`, message: HARNESS_MESSAGE }],
};

const LIBS_MESSAGE =
  'Libraries sit below the services and the cli: a lib never imports them (move what both need into a lib); tests may';
/** Services and the cli, in the libraries' non-test code. */
const LIBS = {
  patterns: [{ regex: `^${anyOf([...SERVICES.map((s) => s.name), '@jobmesh/cli'])}(/|$)`, message: LIBS_MESSAGE }],
};

const CORE_MESSAGE =
  'libs/core is the bottom layer and imports nothing outside itself but Node builtins: take what it needs as an argument, or move the code up into a package that may depend on it';
/** libs/core: anything not relative and not a Node builtin (node:x or a bare builtin name). */
const CORE = {
  patterns: [
    {
      regex: `^(?!\\.\\.?(/|$))(?!node:)(?!${anyOf(builtinModules)}(/|$))`,
      message: CORE_MESSAGE,
    },
  ],
};

const GRPC_KIT_MESSAGE =
  'libs/grpc-kit is the gRPC plumbing and knows nothing of queues or hosting: the services wire it to @jobmesh/queue and @jobmesh/host';
/** libs/grpc-kit: libs/queue and libs/host (bullmq and ioredis are in RAW_QUEUE). */
const GRPC_KIT = {
  paths: [
    { name: '@jobmesh/queue', message: GRPC_KIT_MESSAGE },
    { name: '@jobmesh/host', message: GRPC_KIT_MESSAGE },
  ],
  patterns: [{ regex: '^@jobmesh/(queue|host)/', message: GRPC_KIT_MESSAGE }],
};

/** A service's code: the other services, and the cli. In test code, another service's harness
 * (@jobmesh/<other>/testing) is allowed; in non-test code HARNESS forbids it too, so nothing of another
 * service is allowed there. */
function serviceSet(self, { test }) {
  const others = SERVICES.filter((s) => s.name !== self.name).map((s) => s.name);
  const message = test
    ? 'Services do not import each other: test code may use another service only through its harness, @jobmesh/<service>/testing'
    : 'Services do not import each other: share code through a library (libs/*); only test code may use another service, through @jobmesh/<service>/testing';
  return {
    paths: [...others, '@jobmesh/cli'].map((name) => ({ name, message })),
    patterns: [{ regex: `^${anyOf([...others, '@jobmesh/cli'])}/(?!testing$)`, message }],
  };
}

/**
 * Two config blocks for `files`: one for all of them (test code) and one for their non-test code, each
 * with DEEP, RAW_QUEUE unless `rawQueue` allows bullmq and ioredis, and the given extra sets. Each block
 * also sets no-restricted-syntax, to RAW_QUEUE_SYNTAX or off (`rawQueueSyntax`, by default as
 * `rawQueue` says), since a later block replaces an earlier one's setting of that rule too.
 */
function boundary(name, files, { rawQueue = false, rawQueueSyntax = !rawQueue, test = [], nonTest = [] } = {}) {
  const block = (suffix, sets, ignores) => ({
    name: `jobmesh/boundaries/${name}${suffix}`,
    files,
    ...(ignores ? { ignores } : {}),
    rules: {
      [RULE]: [
        'error',
        {
          paths: sets.flatMap((s) => s.paths ?? []),
          patterns: sets.flatMap((s) => s.patterns ?? []),
        },
      ],
      'no-restricted-syntax': rawQueueSyntax ? ['error', ...RAW_QUEUE_SYNTAX] : 'off',
    },
  });
  const base = [DEEP, ...(rawQueue ? [] : [RAW_QUEUE])];
  return [block('', [...base, ...test]), block('/non-test', [...base, ...nonTest], TEST)];
}

const CODE = ['**/*.{ts,mts,cts,js,mjs,cjs}'];

export default [
  // An eslint-disable comment that no longer disables anything is an error, so none outlives its reason.
  { name: 'jobmesh/linter-options', linterOptions: { reportUnusedDisableDirectives: 'error' } },
  {
    name: 'jobmesh/ignores',
    ignores: ['**/dist/**', '**/node_modules/**', 'libs/contracts/src/gen/**', '**/*.d.ts', 'examples/**/*.py'],
  },
  {
    name: 'jobmesh/typescript',
    files: ['**/*.ts'],
    languageOptions: { parser: tseslint.parser },
  },
  { name: 'jobmesh/plugins', files: CODE, plugins: { '@typescript-eslint': tseslint.plugin } },

  // Everything (cli, examples, test/, …): no deep imports, no bullmq or ioredis, harnesses in tests only.
  ...boundary('all', CODE, { nonTest: [HARNESS] }),
  // bench measures raw BullMQ against Jobmesh, so it imports bullmq and ioredis itself.
  ...boundary('bench', ['bench/**'], { rawQueue: true, nonTest: [HARNESS] }),
  // Libraries do not import services or the cli (their tests may).
  ...boundary('libs', ['libs/**'], { nonTest: [LIBS] }),
  // libs/queue owns BullMQ and Redis; libs/testing starts Redis and raw workers for tests.
  ...boundary('libs/queue+testing', ['libs/queue/**', 'libs/testing/**'], { rawQueue: true, nonTest: [LIBS] }),
  ...boundary('libs/grpc-kit', ['libs/grpc-kit/**'], { test: [GRPC_KIT], nonTest: [GRPC_KIT, LIBS] }),
  // CORE forbids every bare package, bullmq and ioredis included, so RAW_QUEUE would only say it twice;
  // CORE sees no import() or require(), so RAW_QUEUE_SYNTAX stays.
  ...boundary('libs/core', ['libs/core/**'], { rawQueue: true, rawQueueSyntax: true, test: [CORE], nonTest: [CORE] }),
  ...SERVICES.flatMap((service) =>
    boundary(service.dir, [`${service.dir}/**`], {
      test: [serviceSet(service, { test: true })],
      nonTest: [serviceSet(service, { test: false }), HARNESS],
    }),
  ),

  // Library and service code logs through @jobmesh/telemetry's logger, never the console.
  {
    name: 'jobmesh/no-console',
    files: ['libs/*/src/**/*.ts', 'services/*/src/**/*.ts'],
    rules: { 'no-console': 'error' },
  },
];
