import { DtmError, type DtmErrorContext } from './dtm-error.js';

/** The DTM server (or a branch the module calls directly) could not be reached: network error or timeout. */
export class DtmUnavailableError extends DtmError {
  /** The URL that could not be reached. */
  readonly url: string;

  constructor(message: string, url: string, context: DtmErrorContext = {}) {
    super(message, context);
    this.url = url;
  }
}
