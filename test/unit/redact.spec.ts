// What errors may show of URLs and values: credentials never, whatever their characters (`@`, `:`,
// `/`, `?`, `#`, spaces in a password) and wherever the URL sits in the text.
import { describe, expect, it } from '@jest/globals';
import { redactText, redactUrl, safeCause, shorten, shownCallerValue, withoutCredentials } from '../../lib/redact.js';

/** Passwords an attacker's test (and real users) use, each with the secret part `S3CR3T`. */
const TRICKY_URLS = [
  'http://user:S3CR3T@dtm:36789/api/dtmsvr',
  'http://user:p@S3CR3T@dtm:36789/api/dtmsvr', // @ in the password: the userinfo ends at the LAST @
  'http://user:S3CR3T@@dtm:36789/api/dtmsvr',
  'http://us:er:S3CR3T@dtm:36789/api/dtmsvr', // : in the password
  'http://user:pa/S3CR3T@dtm:36789/api/dtmsvr', // / in the password (an invalid URL)
  'http://user:1?S3CR3T@dtm/api', // parses as host "user", port 1, query "?S3CR3T@dtm/api"
  'http://user:pa#S3CR3T@dtm/api',
  'http://user:pa S3CR3T@dtm/api', // a space in the password
  'https://S3CR3T@dtm/api', // a token as the user name
  'HTTP://user:S3CR3T@DTM/api',
  'http://user:S3CR3T@dtm/api?gid=a@b', // and an @ in the query
];

describe('redactUrl', () => {
  it.each(TRICKY_URLS)('hides every credential of %s, keeping the scheme and what follows the last @', (url) => {
    const shown = redactUrl(url);
    expect(shown).not.toContain('S3CR3T');
    expect(shown).not.toContain('user');
    expect(shown).toMatch(/^https?:\/\/\*\*\*@/i);
  });

  it('keeps host, port and path when the password has an @', () => {
    expect(redactUrl('http://user:p@ss@dtm:36789/api/dtmsvr/newGid')).toBe('http://***@dtm:36789/api/dtmsvr/newGid');
  });

  it('hides the userinfo of a value without a scheme (a host:port with credentials)', () => {
    expect(redactUrl('user:S3CR3T@dtm:36790')).toBe('***@dtm:36790');
  });

  it('hides credentials of a URL in the middle of a value, up to the last @', () => {
    const shown = redactUrl('primary http://a:S3CR3T-1@h1/x, backup http://b:S3CR3T-2@h2/x');
    expect(shown).toBe('primary http://***@h2/x');
  });

  it('returns the very string when there is no @ (no allocation on the hot path)', () => {
    const url = `http://dtm:36789/api/${'x'.repeat(10)}`;
    expect(redactUrl(url)).toBe(url);
  });
});

describe('withoutCredentials', () => {
  it('drops the username and password of a URL, keeping the rest as it was written', () => {
    expect(withoutCredentials('http://dtmuser:S3CR3T@dtm:36789/api/dtmsvr')).toBe('http://dtm:36789/api/dtmsvr');
    expect(withoutCredentials('https://S3CR3T@dtm')).toBe('https://dtm');
    expect(withoutCredentials('http://u:p%40S3CR3T@dtm/')).toBe('http://dtm/');
  });

  it('returns the very string without credentials, or when it is not a URL', () => {
    for (const value of ['http://dtm:36789/api/dtmsvr', 'dtm:36790', '']) expect(withoutCredentials(value)).toBe(value);
  });
});

describe('redactText', () => {
  it('redacts every URL in free text, each up to its last @ before whitespace', () => {
    const text = 'connect to http://u:S3CR3T-1@h1:1/a failed; retried https://v:p@S3CR3T-2@h2/b (ECONNREFUSED) for gid a@b';
    const shown = redactText(text);
    expect(shown).not.toMatch(/S3CR3T|u:|v:p/);
    expect(shown).toBe('connect to http://***@h1:1/a failed; retried https://***@h2/b (ECONNREFUSED) for gid a@b');
  });

  it('redacts URLs inside JSON text (lists and mappings printed in errors)', () => {
    const shown = redactText(JSON.stringify({ primary: 'http://u:S3CR3T@h1/x', list: ['http://v:S3CR3T@h2'] }));
    expect(shown).not.toContain('S3CR3T');
  });

  it.each(TRICKY_URLS.filter((u) => !/\s/.test(u)))('redacts %s placed mid-sentence', (url) => {
    expect(redactText(`could not reach ${url} (timeout)`)).not.toContain('S3CR3T');
  });
});

describe('safeCause', () => {
  it('keeps the code and a redacted message, nothing else of the original error', () => {
    const original = Object.assign(new Error('request to http://u:p@S3CR3T@h/x failed'), {
      code: 'ECONNREFUSED',
      config: { headers: { authorization: 'Bearer S3CR3T' } },
    });
    const cause = safeCause(original);
    expect(cause.message).toBe('request to http://***@h/x failed');
    expect(cause).toMatchObject({ code: 'ECONNREFUSED' });
    expect(JSON.stringify(Object.entries(cause))).not.toContain('S3CR3T');
  });
});

describe('shorten', () => {
  it('cuts long values to 200 characters', () => {
    expect(shorten('x'.repeat(500))).toBe(`${'x'.repeat(200)}…`);
    expect(shorten('short')).toBe('short');
  });
});

describe('shownCallerValue', () => {
  it('shows a plain value as it is, any other quoted, cut, and with every character that could break or colour a log line escaped: also those JSON leaves as they are (DEL, C1 such as NEL and CSI, U+2028, U+2029)', () => {
    expect(shownCallerValue('order-7')).toBe('order-7');
    const forged = 'g\r\n[Nest] LOG forged\u0085\u2028\u2029\u009b31m\u001b[0m\u007f"';
    const shown = shownCallerValue(forged);
    expect(shown).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
    expect(JSON.parse(shown)).toBe(forged); // still JSON: it reads back as the value
    expect(shownCallerValue(`\u2028${'x'.repeat(500)}`)).toBe(`"\\u2028${'x'.repeat(199)}…"`);
  });
});

describe('redaction of long texts', () => {
  it('takes time in proportion to the text (before: a run of 100 000 letters, digits, dots or dashes with an @ took seconds, quadratic; a branch answer of max_answer_bytes, hours of a blocked event loop)', () => {
    const run = 'a1.b-'.repeat(20_000);
    const texts = [`${run}@x`, `@${' a://b'.repeat(20_000)}`, `http://user:S3CR3T@h/${run}@x ${run}`];
    const started = performance.now();
    const shown = [redactUrl(texts[0]), redactText(texts[0]), redactText(texts[1]), redactUrl(texts[2]), redactText(texts[2])];
    expect(performance.now() - started).toBeLessThan(1000);
    // what they redact is what they did
    expect(shown[0]).toBe('***@x');
    expect(shown[1]).toBe(texts[0]);
    expect(shown[2]).toBe(texts[1]);
    expect(shown[3]).toBe(`http://***@x ${run}`);
    expect(shown[4]).toBe(`http://***@x ${run}`);
  });
});
