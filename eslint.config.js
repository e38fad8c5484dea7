// ESLint (flat config) with typescript-eslint, run by `npm test` and `npm run lint`. The rules are
// the recommended ones, minus those the code base deliberately does otherwise (see each).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', '.build/', '.test-results/', 'node_modules/', 'coverage/', '.tools/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', URL: 'readonly', URLSearchParams: 'readonly', fetch: 'readonly', AbortSignal: 'readonly', AbortController: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly', structuredClone: 'readonly', queueMicrotask: 'readonly', performance: 'readonly', __dirname: 'readonly', __filename: 'readonly', require: 'readonly', module: 'writable' },
    },
    rules: {
      // unused names: an underscore marks one kept on purpose (a positional parameter, a rest sibling)
      // input validation matches control characters on purpose (lib/config: URLs that carry them are refused)
      'no-control-regex': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
    },
  },
  {
    // a test's Redis client comes from testRedis() (test/support/redis-client.ts), which gives it a command
    // timeout: without one, ioredis waits for ever on a Redis that accepts and never answers
    files: ['test/**/*.ts'],
    ignores: ['test/support/redis-client.ts'],
    rules: {
      'no-restricted-syntax': ['error', { selector: "NewExpression[callee.name=/^(Redis|IORedis|Cluster)$/], NewExpression[callee.property.name=/^(Redis|Cluster)$/]", message: 'Create a test\'s Redis client with testRedis() from test/support/redis-client.ts (it sets commandTimeout).' }],
    },
  },
);
