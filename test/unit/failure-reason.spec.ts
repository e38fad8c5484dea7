// Reading the branch's own message out of DTM's rollback reasons and branch answers (the formats of DTM v1.19).
import { describe, expect, it } from '@jest/globals';
import { DtmFailureError, readFailureReason } from 'nestjs-dtm';

describe('readFailureReason', () => {
  it("reads a saga's rollback reason as DTM v1.19 forms it (url:<target> return failed: <answer> FAILURE)", () => {
    expect(readFailureReason('url:http://bank:3000/withdraw return failed: {"dtm_result":"FAILURE","message":"no account zed"} FAILURE')).toEqual({
      message: 'no account zed',
      target: 'http://bank:3000/withdraw',
    });
  });

  it('a gRPC target, whose answer is the status message', () => {
    expect(readFailureReason('url:localhost:50051/bank.Bank/Withdraw return failed: out of stock: c FAILURE')).toEqual({ message: 'out of stock: c', target: 'localhost:50051/bank.Bank/Withdraw' });
  });

  it("an answer that was only FAILURE (DTM's Go SDK trims the doubled word): FAILURE", () => {
    expect(readFailureReason('url:http://x/a return failed: FAILURE').message).toBe('FAILURE');
    expect(readFailureReason('url:http://x/a return failed: {"dtm_result":"FAILURE"} FAILURE').message).toBe('FAILURE');
  });

  it('a plain-text answer with its own words, and a list of messages (a validation pipe)', () => {
    expect(readFailureReason('url:http://x/a return failed: insufficient balance FAILURE').message).toBe('insufficient balance');
    expect(readFailureReason('url:http://x/a return failed: {"statusCode":409,"message":["amount must be positive","id missing"]} FAILURE').message).toBe('amount must be positive; id missing');
  });

  it("a branch answer body, DTM's own reasons and abort reasons are read or kept as they are", () => {
    expect(readFailureReason('{"dtm_result":"FAILURE","message":"no account zed"}')).toEqual({ message: 'no account zed' });
    expect(readFailureReason('Timeout after 30 seconds')).toEqual({ message: 'Timeout after 30 seconds' });
    expect(readFailureReason('RetryCount is greater than RetryLimit, RetryLimit: 1')).toEqual({ message: 'RetryCount is greater than RetryLimit, RetryLimit: 1' });
    expect(readFailureReason('card declined')).toEqual({ message: 'card declined' });
  });

  it('text that only looks like JSON stays as it is', () => {
    expect(readFailureReason('{not json').message).toBe('{not json');
    expect(readFailureReason('url:http://x/a return failed: {broken FAILURE').message).toBe('{broken');
  });
});

describe("DtmFailureError's message and reason", () => {
  it('a reason of at most 4000 characters is its message too', () => {
    const reason = `${'x'.repeat(3990)} last word`;
    expect(new DtmFailureError(reason)).toMatchObject({ reason, message: reason });
  });

  it('a longer one (a foreign branch answer of up to max_answer_bytes) stays whole in reason; the message keeps its whole words within 4000 characters and says where the rest is', () => {
    const reason = `limit: ${'word '.repeat(200_000)}end`;
    const error = new DtmFailureError(reason, { raw: reason });
    expect(error.reason).toBe(reason);
    expect(error.raw).toBe(reason);
    expect(error.message).toBe(`limit: ${'word '.repeat(798).trimEnd()}… [cut: its reason has all ${reason.length} characters]`);
    expect(error.stack).not.toContain('word '.repeat(900));
  });
});
