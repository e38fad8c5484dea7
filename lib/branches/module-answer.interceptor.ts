import { Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { from, isObservable, of, type Observable } from 'rxjs';
import { answerByModule, answersWithoutHandler, localTransactionOf } from './branch-handler.binding.js';
import { branchTransportOf } from './branch-transports.js';

/**
 * On the handlers whose calls the module can answer without their body (a `@MsgQueryPrepared` with
 * a barrier, an `@XaBranch` with `{ db }`), on either transport: answers a back-check or an XA
 * phase 2 before the app's pipes run, as the wrapped handler would (see branch-handler.binding.ts).
 * DTM sends those calls' request empty, which a validating pipe on the handler's payload (a global
 * `ValidationPipe` with a DTO, a pipe of its own) refuses; Nest runs the pipes only when an
 * interceptor calls `next.handle()`. Any other call (an XA action) goes on as usual. Only these
 * handlers get it: an interceptor costs every call of its route an RxJS pipeline (see the guard).
 */
@Injectable()
export class DtmModuleAnswerInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const transport = branchTransportOf(context);
    const handler = context.getHandler();
    const carrier = transport?.carrier(context);
    const op = carrier && transport!.completeOp(carrier);
    if (op === undefined || !answersWithoutHandler(localTransactionOf(handler), op)) return next.handle();
    const answer = answerByModule(handler, carrier!);
    return answer instanceof Promise ? from(answer) : isObservable(answer) ? answer : of(answer);
  }
}
