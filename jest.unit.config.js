/**
 * `npm run test:unit`: the unit tests (test/unit) alone, without the DTM server and the databases
 * the e2e tests need (no global set-up), and without the type check of everything; seconds.
 */
import base from './jest.config.js';

const { globalSetup, globalTeardown, ...rest } = base;
void globalSetup;
void globalTeardown;

export default { ...rest, testMatch: ['<rootDir>/test/unit/**/*.spec.ts'], reporters: ['default', '<rootDir>/test/support/progress-reporter.js'] };
