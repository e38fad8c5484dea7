// nestjs-dtm/testing: what an app's own tests need to run its branches against a real DTM server.
export {
  DTM_DOCKER_RUN,
  DTM_SERVER_VERSION,
  DtmServerNotFoundError,
  buildDtmServer,
  dtmCachedBinaryPath,
  dtmTestServerConfig,
  findDtmServerBinary,
  freeLocalPort,
  nestjsDtmCacheDir,
  startDtmServer,
  waitForDtmServer,
  type DtmBinary,
  type DtmTestServer,
  type StartDtmServerOptions,
} from './dtm-server.js';
export { callBranch, callGrpcBranch, type DtmBranchAnswer, type DtmBranchCall, type DtmBranchAnswerOutcome } from './branch-call.js';
export { queryTransaction, waitForTransaction } from './transactions.js';
