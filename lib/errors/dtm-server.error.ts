import { DtmError, type DtmErrorContext } from './dtm-error.js';

/**
 * A peer (the DTM server, or a branch the module calls itself) answered with an error that is
 * neither FAILURE nor ONGOING: an unexpected HTTP status or gRPC code (`status`, `protocol`,
 * `endpoint`). Whether anything happened is for that peer to say.
 */
export class DtmServerError extends DtmError {
  /** The answer's body (HTTP) or status message (gRPC), as text. */
  readonly body: string;

  constructor(message: string, body: string, context: DtmErrorContext = {}) {
    super(message, context);
    this.body = body;
  }
}
