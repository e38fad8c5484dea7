// Where the module's error texts shorten what they quote (a cause, an answer's body): the cut falls between words.
import { describe, expect, it } from '@jest/globals';
import { MESSAGES } from '../../lib/dtm.messages.js';

/** What `message` quotes of `quoted` between `before` and `after` (the message's own words around it). */
function quotedIn(message: string, before: string, after: string): string {
  const start = message.indexOf(before) + before.length;
  return message.slice(start, message.indexOf(after, start));
}

describe("a wait's error text quoting a long cause", () => {
  const words = Array.from({ length: 80 }, (_, i) => `word${i}`).join(' '); // 549 characters

  it('cuts it after its last whole word within 300 characters, with …', () => {
    const quoted = quotedIn(MESSAGES.queryUnusable('g1', words), '(', '). DTM goes on');
    expect(quoted).toBe(`${words.slice(0, words.lastIndexOf(' ', 300))}…`);
    expect(quoted.length).toBeLessThanOrEqual(301);
    expect(quoted).toMatch(/ word\d+…$/);
  });

  it('keeps a word that ends right at the limit', () => {
    const text = `${'a'.repeat(296)} bcd efgh`; // "bcd" ends at 300
    expect(quotedIn(MESSAGES.submitTakenUnanswered('g1', 'submitted', text), 'did not come (', '); with waitResult')).toBe(`${'a'.repeat(296)} bcd…`);
  });

  it('keeps a text of at most 300 characters whole', () => {
    const text = `${'x'.repeat(290)} last word`;
    expect(quotedIn(MESSAGES.notStoredAfterSubmit('g1', 'prepared', 5, text), '(the last: ', '). DTM calls')).toBe(text);
  });

  it('cuts one long word (a URL, a JSON body without spaces) at the limit, never inside a surrogate pair', () => {
    expect(quotedIn(MESSAGES.queryUnusable('g1', `{"a":"${'b'.repeat(600)}"}`), '(', '). DTM goes on')).toBe(`{"a":"${'b'.repeat(294)}…`);
    const emoji = `${'c'.repeat(299)}😀${'d'.repeat(50)}`;
    expect(quotedIn(MESSAGES.queryUnusable('g1', emoji), '(', '). DTM goes on')).toBe(`${'c'.repeat(299)}…`);
  });

  it('the outcome-unknown text of a submit DTM holds no record of quotes its cause cut the same way', () => {
    const message = MESSAGES.notStoredAfterSubmit('g1', 'absent', 5, words);
    expect(quotedIn(message, 'may have reached it (', '), and DTM')).toMatch(/^word0 .* word\d+…$/);
  });
});

describe('the other texts that quote a cause cut it the same way', () => {
  const words = Array.from({ length: 80 }, (_, i) => `word${i}`).join(' '); // 549 characters
  const cut = `${words.slice(0, words.lastIndexOf(' ', 300))}…`;

  it("notFinal: the last error of DTM's status query", () => {
    expect(quotedIn(MESSAGES.notFinal('g1', 'submitted', 5, words), 'could not be asked (', '); its last known')).toBe(cut);
  });

  it("abortFailed: the body's error, whatever DTM answered the abort", () => {
    expect(MESSAGES.abortFailed('tcc', 'g1', words, undefined).endsWith(`): ${cut}`)).toBe(true);
    expect(MESSAGES.abortFailed('tcc', 'g1', words, 'failed').endsWith(`the caller gets the body's error: ${cut}`)).toBe(true);
    expect(MESSAGES.abortFailed('xa', 'g1', words, 'succeed').endsWith(`(the caller gets that error): ${cut}`)).toBe(true);
    expect(MESSAGES.abortFailed('msg', 'g1', words, 'submitted').endsWith(`doAndSubmitDb does): ${cut}`)).toBe(true);
  });

  it("the submit's, the first round's and the workflow's causes", () => {
    expect(quotedIn(MESSAGES.submitOutcomeUnknown('g1', 'prepared', words), 'reached DTM (', '), and DTM')).toBe(cut);
    expect(quotedIn(MESSAGES.msgFirstRoundUnfinished('g1', 'submitted', words), 'DTM answered: ', '): DTM delivers')).toBe(cut);
    expect(quotedIn(MESSAGES.msgSubmitNotTaken('g1', words, true, 60, true), 'did not get through (', '): DTM, asked')).toBe(cut);
    expect(quotedIn(MESSAGES.msgSubmitNotTaken('g1', words, false, 60, false), 'did not get through (', '): it did not')).toBe(cut);
    expect(quotedIn(MESSAGES.msgSubmitStatusUnknown('g1', words, words, true), 'reached DTM (', '), and DTM')).toBe(cut);
    expect(quotedIn(MESSAGES.msgSubmitStatusUnknown('g1', 'reset', words, false), 'what it holds then (', '): it holds')).toBe(cut);
    expect(quotedIn(MESSAGES.submitStatusUnknown('g1', 'tcc', 'reset', words), 'what it holds then (', '): it holds')).toBe(cut);
    expect(quotedIn(MESSAGES.submitMaybeLost('g1', words), 'reached DTM (', '): DTM holds')).toBe(cut);
    expect(quotedIn(MESSAGES.waitResultNotFinal('g1', 'submitted', words), 'first round (', ') and is')).toBe(cut);
    expect(quotedIn(MESSAGES.workflowPending('w', 'g1', words), 'not finished (', '); DTM will')).toBe(cut);
    expect(quotedIn(MESSAGES.workflowRecordRefused('01', 'action', words), 'action (', '): the workflow')).toBe(cut);
    expect(quotedIn(MESSAGES.workflowPhase2Failure('w', 'g1', 's', 'compensation', words), 'DtmFailureError (', '), which')).toBe(cut);
  });
});

describe("the warnings that quote a refusal's message (a pipe's, a handler's 400 / 422, an interceptor's) cut it the same way", () => {
  const words = Array.from({ length: 80 }, (_, i) => `word${i}`).join(' '); // 549 characters
  const cut = `${words.slice(0, words.lastIndexOf(' ', 300))}…`;
  const info = { gid: 'g1', branchId: '01', op: 'confirm', transType: 'tcc' };

  it('pipeFailureCannotRollBack, whoever refused', () => {
    expect(quotedIn(MESSAGES.pipeFailureCannotRollBack('C.confirm', 'tcc-confirm', info, words, 'before'), 'refused its payload (', '), answered FAILURE')).toBe(cut);
    expect(quotedIn(MESSAGES.pipeFailureCannotRollBack('C.confirm', 'tcc-confirm', info, words, 'handler'), 'its handler refused it (', '), its local')).toBe(cut);
    expect(quotedIn(MESSAGES.pipeFailureCannotRollBack('C.confirm', 'tcc-confirm', info, words, 'after'), 'refused its answer (', '), answered FAILURE')).toBe(cut);
  });

  it('pipeRefusedUndo and interceptorRefusedUndo (a TCC Cancel, a workflow compensation)', () => {
    const cancel = { ...info, op: 'cancel' };
    expect(quotedIn(MESSAGES.pipeRefusedUndo('C.cancel', 'tcc-cancel', cancel, words), 'refused its payload (', '), so this')).toBe(cut);
    expect(quotedIn(MESSAGES.pipeRefusedUndo('C.undo', 'saga-compensate', { ...cancel, transType: 'workflow', op: 'compensate' }, words), 'refused its payload (', '), so this')).toBe(cut);
    expect(quotedIn(MESSAGES.interceptorRefusedUndo('C.cancel', 'tcc-cancel', cancel, 422, words, 'handler'), 'answered 422 itself (', '), which')).toBe(cut);
    expect(quotedIn(MESSAGES.interceptorRefusedUndo('C.cancel', 'tcc-cancel', cancel, 422, words, 'after'), 'its answer with 422 (', '): the module')).toBe(cut);
    expect(MESSAGES.interceptorRefusedUndo('C.cancel', 'tcc-cancel', cancel, 422, words, undefined)).toContain(`(${cut})`);
    expect(MESSAGES.interceptorRefusedUndo('C.cancel', 'tcc-cancel', cancel, 422, words, undefined)).not.toContain('word79');
  });
});

describe('messages quoting what a caller sent (a forged call can send some 16 KiB per header or query value, more in a body)', () => {
  it("a header a call's token signs and the call lacks: named cut to 200 characters and quoted", () => {
    const name = `x-${'a'.repeat(16 * 1024)}`;
    const message = MESSAGES.authSignedHeaderMissing(name, 'dtm-auth-headers');
    expect(message).toBe(`it lacks the forwarded header ${JSON.stringify(`${name.slice(0, 200)}…`)} (or carries it twice), which its token signs (dtm-auth-headers): a proxy between DTM and this app must pass it on unchanged`);
    expect(MESSAGES.authSignedHeaderMissing('x-tenant', 'dtm-auth-headers')).toContain('lacks the forwarded header x-tenant (');
  });

  it("tccFromBranch() given the @BranchContext() of a call that is no Try (an undecorated route's, whose op nothing checked): its op cut to 200 characters and quoted", () => {
    const op = `${'o'.repeat(16 * 1024)}\nforged`;
    const message = MESSAGES.nestedTccNotInTry(op);
    expect(message).toContain(`of a TCC call with op ${JSON.stringify(`${'o'.repeat(200)}…`)}: sub-branches`);
    expect(message).not.toContain('\n');
    expect(MESSAGES.nestedTccNotInTry('cancel')).toContain('of a TCC call with op cancel: sub-branches');
  });

  it("an XA commit / rollback or a TCC confirm / cancel at another endpoint than DTM recorded: the path (its query but DTM's keys, any length) named cut to 200 characters and quoted", () => {
    const path = `/xa/pg?junk=${'j'.repeat(15_000)}`;
    const message = MESSAGES.authNotRecorded(path);
    expect(message).toContain(JSON.stringify(`${path.slice(0, 200)}…`));
    expect(message.length).toBeLessThan(400);
    expect(MESSAGES.authNotRecorded('/xa/pg?tenant=7')).toBe("DTM's record of this branch does not name /xa/pg?tenant=7 for this op"); // a plain one as it is
  });

  it("a pipe's refusal of a call DTM sends empty (a back-check): its message (naming what the body held) cut between words", () => {
    const problem = Array.from({ length: 5000 }, (_, i) => `property p${i} should not exist`).join('; ');
    const message = MESSAGES.emptyRequestRefused('Shop.check', { gid: 'g1', branchId: '00', op: 'msg', transType: 'msg' }, problem);
    const quoted = quotedIn(message, 'Shop.check answered 400 (', ') to DTM');
    expect(quoted).toBe(`${problem.slice(0, problem.lastIndexOf(' ', 300))}…`);
    expect(message.length).toBeLessThan(1500);
  });
});
