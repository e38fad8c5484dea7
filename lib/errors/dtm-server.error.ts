import { DtmError, type DtmErrorContext } from './dtm-error.js';

/** An HTTP peer (the DTM server, or a branch the module calls directly) answered with an unexpected status. */
export class DtmServerError extends DtmError {
  /** The URL that answered. */
  readonly url: string;
  /** The answer's body, as text. */
  readonly body: string;

  constructor(message: string, url: string, body: string, context: DtmErrorContext = {}) {
    super(message, context);
    this.url = url;
    this.body = body;
  }
}
