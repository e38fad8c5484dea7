// The public API of nestjs-dtm, and nothing else.
export { DtmError, type DtmErrorContext } from './errors/dtm-error.js';
