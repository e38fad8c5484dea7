// docs/testing.md's gRPC example, run as a user runs it: testing-grpc.recipe.ts is the page's block
// with its hidden prelude, verbatim (test/unit/docs.spec.ts checks it), here with the DTM binary the
// harness built (DTM_BINARY, which startDtmServer() reads), set before the recipe's own beforeAll
// runs (a hook of the file runs first). The recipe starts its own DTM server and talks gRPC to it.
import { beforeAll } from '@jest/globals';
import { dtmBinaryPath } from '../support/services/binaries.js';
import './testing-grpc.recipe.js';

beforeAll(() => {
  process.env.DTM_BINARY = dtmBinaryPath();
});
