import { HttpException } from '@nestjs/common';
import { DtmFailureError } from '../errors/dtm-failure.error.js';
import { DtmOngoingError } from '../errors/dtm-ongoing.error.js';
import { dtmResultOfRpcException } from './grpc/grpc-branch.transport.js';

/**
 * What DTM reads the answer to a branch handler's error `exception` as, on either transport (see
 * the transports' `answer`): FAILURE for `DtmFailureError`, an `HttpException` with status 409 and an
 * `RpcException` with code ABORTED; ONGOING for `DtmOngoingError`, status 425 and FAILED_PRECONDITION;
 * undefined for anything else (an error DTM retries).
 */
export function dtmResultOfError(exception: unknown): 'FAILURE' | 'ONGOING' | undefined {
  if (exception instanceof DtmFailureError) return 'FAILURE';
  if (exception instanceof DtmOngoingError) return 'ONGOING';
  if (exception instanceof HttpException) {
    const status = exception.getStatus();
    return status === 409 ? 'FAILURE' : status === 425 ? 'ONGOING' : undefined;
  }
  return dtmResultOfRpcException(exception);
}

