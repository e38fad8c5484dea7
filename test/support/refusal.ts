// The message of an error a call throws, for tests that assert a refusal's whole text.

/**
 * Runs `call` and gives the message of the error it throws, which must be a `type` (default: any
 * `Error`); throws when it returns instead, or throws something else.
 */
export function refusal(call: () => unknown, type: abstract new (...args: never[]) => Error = Error): string {
  try {
    call();
  } catch (err) {
    if (err instanceof type) return err.message;
    throw new Error(`refused with ${String(err)}, not a ${type.name}`, { cause: err });
  }
  throw new Error('not refused');
}
