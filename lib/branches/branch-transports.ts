import type { ArgumentsHost } from '@nestjs/common';
import type { BranchTransport } from './branch-transport.js';
import { grpcBranchTransport, isMetadata } from './grpc/grpc-branch.transport.js';
import { httpBranchTransport } from './http/http-branch.transport.js';

/** The transport a call came in on: HTTP, or gRPC (an RPC call whose context is grpc-js metadata); undefined for others. */
export function branchTransportOf(host: ArgumentsHost): BranchTransport | undefined {
  const type = host.getType();
  if (type === 'http') return httpBranchTransport;
  if (type === 'rpc' && isMetadata(host.getArgByIndex(1))) return grpcBranchTransport;
  return undefined;
}
