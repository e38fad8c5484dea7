// docs/testing.md's outbox recipe, run as a user runs it: testing-outbox.recipe.ts is the page's block
// with its hidden prelude, verbatim (test/unit/docs.spec.ts checks it), here with the DTM binary the
// harness built (DTM_BINARY, which startDtmServer() reads) and this file's PostgreSQL database as
// DATABASE_URL, both set before the recipe's own beforeAll runs (a hook of the file runs first).
import { beforeAll } from '@jest/globals';
import { fileDatabases } from '../support/databases.js';
import { dtmBinaryPath } from '../support/services/binaries.js';
import './testing-outbox.recipe.js';

beforeAll(async () => {
  process.env.DTM_BINARY = dtmBinaryPath();
  process.env.DATABASE_URL = (await fileDatabases()).postgres.url;
});
