/** What {@link textOf} says of a value that String() cannot convert. */
const UNCONVERTIBLE_TEXT = 'a value that cannot be converted to text';

/**
 * @internal `value` (anything thrown: not always an Error) as text, never throwing: String() throws
 * for an object without a prototype (`Object.create(null)`) or whose `toString` / `Symbol.toPrimitive`
 * throws or answers an object; such a value is {@link UNCONVERTIBLE_TEXT}.
 */
export function textOf(value: unknown): string {
  try {
    return String(value);
  } catch {
    return UNCONVERTIBLE_TEXT;
  }
}

/** @internal An error's message, else the value thrown in its place as text ({@link textOf}): never throws. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : textOf(error);
}
