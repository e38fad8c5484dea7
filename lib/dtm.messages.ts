/** Every message nestjs-dtm shows a user: what happened, and how to fix it. */
export const MESSAGES = {
  // configuration
  configNotAnObject: (got: string) => `must be an object of lynx.dtm settings in camelCase, got ${got}`,
  configFileMissing: (file: string, path: string) =>
    `file ${JSON.stringify(file)} not found (looked at ${path}); fix the path (relative paths start from the working directory) or drop configFile`,
  configYamlSyntax: (path: string, reason: string, line?: number, column?: number) =>
    `YAML syntax error in ${path}${line ? ` at line ${line}, column ${column}` : ''}: ${reason}; fix the file`,
  configSectionMissing: (path: string) => `${path} has no lynx.dtm section; add one (lynx:\\n  dtm:\\n    server_url: ...) or point configFile at the right file`,
  configSectionNotMapping: (got: string) => `must be a mapping of settings (server_url: ..., timeout: ...), got ${got}`,
  configEnvMissing: (name: string) => `environment variable ${name} is not set; set it, or give a default as \${${name}:default}`,
  configUnknownKey: (known: string[], suggestion?: string) =>
    `unknown key${suggestion ? `; did you mean "${suggestion}"?` : ''} (known keys: ${known.join(', ')})`,
  configWant: (want: string, got: string) => `must be ${want}, got ${got}`,
  configPositive: (got: number) => `must be a positive number of seconds, got ${got}`,
  configWholeSeconds: (got: number) => `must be a whole number of seconds (DTM stores integers), got ${got}`,
  configBadHeaders: (bad: string[]) => `must list HTTP header names (letters, digits, -), these are not: ${bad.join(', ')}`,
  disabled: (operation: string) =>
    `DTM is disabled (lynx.dtm.enabled: false), so ${operation} cannot run; set lynx.dtm.enabled to true, or check DtmClient.enabled first`,

  // talking to DTM and to branches
  unavailable: (url: string, cause: string, timeoutSeconds: number) =>
    `could not reach ${url} (${cause}); check that the DTM server runs there and lynx.dtm.server_url points at it (timeout ${timeoutSeconds} s)`,
  branchUnavailable: (url: string, cause: string, timeoutSeconds: number) =>
    `could not reach the branch ${url} (${cause}, timeout ${timeoutSeconds} s); check that the service runs and the URL is right`,
  serverStatus: (url: string, status: number, body: string) => `${url} answered HTTP ${status}: ${truncate(body)}`,
  branchStatus: (url: string, status: number, body: string) =>
    `the branch ${url} answered HTTP ${status}: ${truncate(body)} (a branch must answer 200 for success, 409 for FAILURE, 425 for ONGOING)`,
  failureFromDtm: (operation: string, gid: string, message: string) => `DTM refused ${operation} of ${gid}: ${message}`,
  waitResultNotSucceeded: (gid: string, message: string) =>
    `${gid} did not succeed in DTM's first round (${message}); it may still be running or rolling back: use submitAndWait() or waitForFinal() for the final status`,
  notFinal: (gid: string, status: string, timeoutMs: number) =>
    `${gid} is still "${status}" after ${timeoutMs} ms; DTM keeps retrying it: wait longer or query it later`,
  unknownTransaction: (gid: string) => `DTM has no transaction ${gid}`,

  // building transactions
  emptyPayload: () => 'a branch payload must not be an empty string (DTM would call the branch with GET and no body); pass {} or a non-empty string',
  bufferNotUtf8: () => "a Buffer payload must be valid UTF-8: DTM's HTTP API carries payloads as strings; encode binary data (e.g. base64) first",
  payloadNotSerializable: (reason: string) => `the payload cannot be JSON-encoded (${reason}); pass a plain object, an array, a string or a Buffer`,
  badStepIndex: (step: number, count: number) => `step ${step} does not exist: the saga has ${count} step(s), numbered from 0`,
  badGid: (gid: unknown) => `gid must be a non-empty string without spaces, got ${JSON.stringify(gid)}; use generateGid()`,
  branchIdOverflow: (parent: string) => `no more sub-branch ids under "${parent}": DTM's ids go up to 99 per level and 20 characters in all`,
  msgNotPrepared: (gid: string) => `msg ${gid} has no query_prepared URL: call prepare(url) first, or use doAndSubmit(url, fn)`,
} as const;

function truncate(text: string, max = 300): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
