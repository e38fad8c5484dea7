// The message scenarios of client-msg.cases.ts, DtmClient talking gRPC to DTM (client-msg.spec.ts: HTTP).
import { describeClientMsg } from './client-msg.cases.js';

describeClientMsg('grpc');
