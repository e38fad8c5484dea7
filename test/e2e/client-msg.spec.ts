// The message scenarios of client-msg.cases.ts, DtmClient talking HTTP to DTM (client-msg-grpc.spec.ts: gRPC).
import { describeClientMsg } from './client-msg.cases.js';

describeClientMsg('http');
