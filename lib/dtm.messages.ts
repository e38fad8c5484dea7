import { quotedCallerValue, redactText, redactUrl, shorten, shownCallerValue } from './redact.js';

/** Every message nestjs-dtm shows a user: what happened, and how to fix it. URLs given by the app are shown with their credentials redacted. */
/** What the answer to a branch call without DTM's keys says (a diagnosis probe reads it: the route is reachable). */
export const BRANCH_KEYS_MISSING = 'is a DTM branch, but this call lacks';

export const MESSAGES = {
  // configuration
  moduleOptionIsSetting: (camel: string, yaml: string) =>
    `is a lynx.dtm setting: give it inside config ({ config: { ${camel}: ... } }) or in the YAML section (${yaml}); beside config it would be ignored`,
  moduleOptionIsGlobal: () =>
    'goes beside useFactory, not in what it returns: DtmModule.forRootAsync({ isGlobal: true, useFactory }); returned, it would be ignored',
  moduleOptionUnknown: (known: readonly string[], suggestion: string | undefined) =>
    `unknown option${suggestion ? `; did you mean "${suggestion}"?` : ''} (the options: ${known.join(', ')}; lynx.dtm settings go inside config)`,
  instrumentationOptionUnknown: (known: readonly string[], suggestion: string | undefined) =>
    `unknown instrumentation option${suggestion ? `; did you mean "${suggestion}"?` : ''} (the options: ${known.join(', ')})`,
  moduleOptionsFactoryNoCreate: (factory: string, methods: readonly string[]) =>
    `${factory} has no method create(), which DtmModule.forRootAsync calls for the options${methods.length > 0 ? ` (it has ${methods.map((m) => `${m}()`).join(', ')})` : ''}; name the method create()`,
  moduleOptionsNotObject: (got: string) =>
    got === 'undefined'
      ? "is undefined: the useFactory of DtmModule.forRootAsync returned nothing (a factory with a block body needs `return`); return the module's options, e.g. { configFile: 'config.yaml' }, { section: config.get('lynx.dtm') } or { config: { serverUrl: ... } }"
      : `must be the module's options object, e.g. { configFile: 'config.yaml' } or { config: { serverUrl: ... } } (what forRoot takes and forRootAsync's useFactory returns), got ${got}`,
  configNotAnObject: (got: string) => `must be an object of lynx.dtm settings in camelCase, got ${got}`,
  configFileMissing: (file: string, path: string) =>
    `file ${JSON.stringify(file)} not found (looked at ${path}); fix the path (relative paths start from the working directory) or drop configFile`,
  configFileUnreadable: (file: string, path: string, why: string) =>
    `file ${JSON.stringify(file)} (${path}) ${why}; point configFile at the YAML file holding the lynx.dtm section`,
  configAliasBomb: (max: number) =>
    `expands to more than ${max} values through its YAML aliases (an alias bomb?); write the section out without aliases of aliases`,
  configAliasRecursive: () => 'contains itself through a YAML alias (&x ... *x inside itself); remove that alias',
  configYamlSyntax: (path: string, reason: string, line?: number, column?: number) =>
    `YAML syntax error in ${path}${line ? ` at line ${line}, column ${column}` : ''}: ${reason}; fix the file`,
  configSectionMissing: (path: string) => `${path} has no lynx.dtm section; add one (lynx:\\n  dtm:\\n    server_url: ...) or point configFile at the right file`,
  configSectionEmpty: (path: string) =>
    `is empty (YAML null) in ${path}: nothing is set under lynx.dtm (every key commented out?); set the keys you need (server_url: ...), or write dtm: {} for the defaults`,
  configSectionNull: () =>
    'is null: the lynx.dtm section your configuration loader read is empty (dtm: with nothing under it, every key commented out?); set the keys you need (server_url: ...), or write dtm: {} for the defaults',
  configSectionUndefined: (got: string) =>
    `is ${got}: the configuration you read it from has no lynx.dtm section (ConfigService.get('lynx.dtm') returns undefined for a missing key); load the YAML that has it (ConfigModule.forRoot({ load: [...] })), or give inline \`config\` instead of \`section\``,
  configFileUndefined: () =>
    "is undefined and nothing else configures the module: the path you meant to pass is missing (ConfigService.get or process.env answers undefined for a variable that is not set); set it, or leave configFile out for the defaults",
  configInlineUndefined: () =>
    "is undefined and nothing else configures the module: the object you meant to pass is missing (ConfigService.get returns undefined for a missing key); pass the settings object, pass `section: config.get('lynx.dtm')` for snake_case YAML settings, or leave `config` out for the defaults",
  configSectionNotMapping: (got: string) => `must be a mapping of settings (server_url: ..., timeout: ...), got ${got}`,
  configEnvMissing: (name: string) => `environment variable ${name} is not set; set it, or give a default as \${${name}:default}`,
  configEnvEmptyKey: (name: string) => `environment variable ${name} is set but empty: a key cannot be empty; set it to a key, or write \${${name}:} for a key that may be left out`,
  configUnknownKey: (known: string[], suggestion?: string) =>
    `unknown key${suggestion ? `; did you mean "${suggestion}"?` : ''} (known keys: ${known.join(', ')})`,
  configWant: (want: string, got: string) => `must be ${want}, got ${got}`,
  configPositive: (got: number) => `must be a positive number of seconds, got ${got}`,
  configWholeSeconds: (got: number) => `must be a whole number of seconds (DTM stores integers), got ${got}`,
  configAuthKeysEmpty: () => 'lists no key: give at least one key (e.g. [${DTM_BRANCH_KEY}] with the variable set), or remove the setting to leave branch calls unauthenticated',
  configAuthKeysBad: (bad: string[], min: number) => `must list keys of at least ${min} characters (e.g. \`openssl rand -base64 33\`); these are not (position: problem): ${bad.join(', ')}`,
  configRange: (min: number, max: number, unit: string, why: string, got: number) => `must be from ${min} to ${max} ${unit} (${why}), got ${got}`,
  contractServiceName: (got: string) => `defineBranches: the service name must be a letter then letters, digits, _ and - (the key of lynx.dtm.services), got ${got}`,
  contractBranchName: (service: string, branch: string) =>
    `defineBranches(${JSON.stringify(service)}): branch name ${JSON.stringify(branch.length > 140 ? `${branch.slice(0, 140)}…` : branch)} must be a letter, digit or _ then letters, digits and _ . : - (at most 128 characters)`,
  contractDeclaration: (service: string, branch: string, got: string) =>
    `defineBranches(${JSON.stringify(service)}): branch ${JSON.stringify(branch)} must be declared with sagaBranch(), tccBranch(), msgBranch() or xaBranch() (called: sagaBranch<Payload>() or sagaBranch(schema)), got ${got}`,
  configServiceName: (got: string) => `service names must be a letter then letters, digits, _ and - (as in defineBranches), got ${got}`,
  configServiceWhere: (given: number) =>
    given === 0
      ? 'says neither where the service is: give url (its base URL, for its manifest GET <url>/dtm/branches) or grpc (its gRPC address)'
      : 'gives both url and grpc: give one (url when the service has an HTTP server: its manifest lists its gRPC targets too)',
  configServiceUrlCredentials: (got: string) =>
    `must not hold credentials (user:password@): they are not supported here, Node's fetch refuses such a URL and would print it whole; give the URL without them (the manifest endpoint GET <url>/dtm/branches takes none: protect it on the network, or put credentials in a proxy in front of the service), got ${got}`,
  configWholeBytes: (got: number) => `must be a whole number of bytes, got ${got}`,
  configUrlQuery: (got: string) =>
    `must not have a query (?...) or fragment (#...): the module appends DTM's paths to it (and branch paths to app_url), got ${got}`,
  configUrlSpaces: (got: string) => `must not contain spaces or control characters (check the quoting), got ${got}`,
  configBadHeaders: (bad: string[]) => `must list HTTP header names (letters, digits, -), these are not: ${bad.join(', ')}`,
  configForbiddenHeaders: (names: string[]) =>
    `must not list ${names.join(', ')}: framing, connection and proxy headers (Host, Content-Length, Content-Type, Content-Encoding, Transfer-Encoding, Connection, Keep-Alive, TE, Trailer, Upgrade, Expect, Proxy-*) describe the request that carried them, not the branch call, and dtm-* / grpc-* are DTM's and gRPC's own metadata; remove them`,
  configBinaryHeaders: (names: string[]) =>
    `must not list ${names.join(', ')}: a name ending in -bin is gRPC binary metadata, whose bytes DTM's branch_headers (text) cannot hold: a value that is not printable ASCII would make every transaction started while serving the call fail (and over HTTP, where gRPC-web sends such a value as base64, a gRPC branch would get the base64 text's bytes, not the value); pass it on under a name without -bin, as text (base64 if it is binary), or set it per transaction with branchHeaders`,
  passThroughStored: (names: string[]) =>
    `lynx.dtm.pass_through_headers forwards ${names.join(', ')} of the request being served to every branch of the transactions it starts: DTM stores them with each transaction (branch_headers) and returns them to anyone who can read its API (/api/dtmsvr/query, /all) or its storage. List only values that may be stored (request ids, tenants), not credentials (Authorization, Cookie, API keys), and keep DTM's API private`,
  appUrlCredentialsStored: (shown: string) =>
    `lynx.dtm.app_url (${shown}) holds credentials (user:password@): they are in every branch URL this app gives DTM, which DTM stores with each transaction, logs, and returns to anyone who can read its API (/api/dtmsvr/query, /all) or its storage. Give app_url without them and authenticate branch calls with lynx.dtm.branch_auth_keys, or keep DTM's API, logs and storage as private as those credentials`,
  serverUrlDefaultBesideGrpc: (grpcServer: string, serverUrl: string) =>
    `lynx.dtm.grpc_server is ${grpcServer}, but lynx.dtm.server_url is not set, so it is its default ${serverUrl}: transactions over gRPC reach grpc_server, while query(), list(), forceStop(), the waits (submitAndWait(), waitForFinal(), ...AndWait) and the version that ping(), startup_ping and the health indicator read use DTM's HTTP API (its gRPC API has none of them), at ${serverUrl}. Set lynx.dtm.server_url to the same DTM's HTTP API (http://<its host>:36789/api/dtmsvr by default)`,
  grpcServerDefaultBesideServerUrl: (serverUrl: string, grpcServer: string) =>
    `lynx.dtm.protocol is grpc and lynx.dtm.server_url is ${serverUrl}, but lynx.dtm.grpc_server is not set, so it is its default ${grpcServer}: query(), the waits and ping() use server_url, while every transaction (prepare, submit, abort, registerBranch) goes to ${grpcServer}. Set lynx.dtm.grpc_server to the same DTM's gRPC API (<its host>:36790 by default)`,
  disabled: (operation: string) =>
    `DTM is disabled (lynx.dtm.enabled: false), so ${operation} cannot run; set lynx.dtm.enabled to true, or check DtmClient.enabled first`,

  topicWithAuth: (gid: string, topic: string) =>
    `msg ${gid}: ${topic} cannot be authenticated (DTM picks the subscribers, the app cannot sign their calls); add each subscriber's URL instead, or unset lynx.dtm.branch_auth_keys`,
  // authenticated branch calls
  authRefused: (where: string, gid: string, branchId: string, op: string, reason: string) =>
    `branch call refused (${where}, gid ${quotedCallerValue(shorten(gid))}, branch ${quotedCallerValue(shorten(branchId))}, op ${quotedCallerValue(shorten(op))}): ${reason}; ` +
    'with lynx.dtm.branch_auth_keys set, only calls signed by an app with one of the keys run a branch (the calling app needs the same keys)',
  authNoToken: (header: string, callHeader: string) => `it carries no token for this branch and op (neither ${header} nor ${callHeader})`,
  authBadToken: (where: string) => `the token in ${where} is not this call's (another gid, branch, op, endpoint, body or forwarded header value, or a key this app does not accept)`,
  authNoRawBody: (protocol: string) =>
    protocol === 'grpc'
      ? 'the request bytes were not kept (the gRPC server was not seen by the module before it started: import DtmModule in the app that serves it)'
      : 'the raw body was not kept',
  authBadHeaderList: (header: string) => `its ${header} is not a sorted list of forwarded header names a token signs`,
  authSignedHeaderMissing: (name: string, header: string) =>
    `it lacks the forwarded header ${shownCallerValue(name)} (or carries it twice), which its token signs (${header}): a proxy between DTM and this app must pass it on unchanged`,
  authTccIdWithoutToken: () => 'its branch id carries no token (an authenticated TCC branch id is <id>-<token>)',
  authUnknownTransaction: () => 'DTM has no such transaction',
  authWrongPhase: (transType: string, status: string, statuses: readonly string[]) =>
    `DTM records the ${transType} transaction as ${status}, and this op runs only when it is ${statuses.join(' or ')}`,
  authRecreated: (apart: number, window: number) =>
    `DTM's record of this transaction was created ${apart} s away from the time its tokens were issued (more than lynx.dtm.branch_auth_issue_window, ${window} s): ` +
    `DTM forgot the transaction they were issued for, and it was re-created under its gid with them. If not, the clocks of the app that started it and of DTM differ by that much: sync them, or raise branch_auth_issue_window`,
  authNotRecorded: (path: string) => `DTM's record of this branch does not name ${shownCallerValue(path)} for this op`,
  authXaCalledBefore: (gid: string, branchId: string, xid: string, table: string) =>
    `branch call refused (XA action, gid ${JSON.stringify(gid)}, branch ${JSON.stringify(branchId)}): this branch (xid '${xid}') was called before, and with lynx.dtm.branch_auth_check_actions an XA action runs for its first call only ` +
    `(which wrote the row (action, 00, call) of ${table}); the app calls each XA branch once, so a second call is a replay of one taken off the wire, or the app's call sent again after the branch had read it. Nothing ran`,
  xaBranchHeld: (gid: string, branchId: string, xid: string) =>
    `XA branch ${JSON.stringify(branchId)} of ${JSON.stringify(gid)} (xid '${xid}') is held by an earlier call of it (prepared, or its action still running): this call is a second one of a branch that ran (the app calls each XA branch once: a replay of a call taken off the wire, or the app's call sent again after the branch had read it). Nothing ran`,
  authXaNotDue: (op: string) =>
    `DTM's record does not show this XA branch due for its ${op} at this target (an XA ${op} carries no token: only a call DTM makes in the transaction's phase runs; the app's log says what the record holds)`,
  workflowResumeRefusedFor: (name: string, gid: string, reason: string) => `resume of workflow ${quotedCallerValue(name)} (gid ${quotedCallerValue(gid)}) refused: ${reason}`,
  workflowResumeAnswerLost: (name: string, gid: string, status: number, why: string) =>
    `workflow ${shownCallerValue(name)} gid=${shownCallerValue(gid)}: the resume ended, but its answer (${status}) could not be sent (${truncate(why)}): something else answered or ended the call first, such as a request-timeout middleware. DTM reads that answer instead, which only changes what DTM logs (it calls the resume again until the workflow ends); nothing is lost. Exempt the route /dtm/workflow/resume from such a timeout: DTM bounds its call itself (lynx.dtm.branch_timeout)`,
  workflowResumeUnsigned: (name: string, gid: string) =>
    `resume of workflow ${quotedCallerValue(name)} (gid ${quotedCallerValue(gid)}) refused: the call carries no token stored by the app that started it (lynx.dtm.branch_auth_keys must be the same on every instance)`,
  authActionNotDue: (transType: string, pending: readonly string[]) =>
    `DTM has not called this ${transType} step yet: the step${pending.length > 1 ? 's' : ''} before it (branch ${pending.join(', ')}) ${pending.length > 1 ? 'are' : 'is'} not done`,
  configPublishedAppUrlCredentials: (got: string) =>
    `must not hold credentials (user:password@) with publish_branches: true: the branch manifest (GET /dtm/branches), served to anyone without credentials, would show them in every HTTP target; give app_url without them (authenticate branch calls with branch_auth_keys), or turn publish_branches off, got ${got}`,
  configCheckActionsWithoutKeys: () => 'true needs branch_auth_keys: only authenticated calls can be checked; set the keys, or remove branch_auth_check_actions',
  authBackCheckEarly: (due: string) => `DTM back-checks this message only after ${due}`,

  // talking to DTM and to branches
  unavailable: dtmUnreachable('server_url'),
  grpcUnavailable: dtmUnreachable('grpc_server'),
  branchUnavailable: (url: string, cause: string, timeoutSeconds: number) =>
    notGrpcAt(url, cause)
      ? `could not reach the branch ${url} (${cause}, timeout ${timeoutSeconds} s): ${notGrpcAt(url, cause)}`
      : `could not reach the branch ${url} (${cause}${resetNote(cause, 'the branch')}, timeout ${timeoutSeconds} s); check that the service runs and the URL is right`,
  /** The diagnosis of an unfinished gRPC branch whose target answered the HTTP/2 preface with HTTP/1. */
  grpcTargetNotGrpc: (address: string) => `something listens at ${address} but answers HTTP/1, not gRPC (HTTP/2): ${NOT_GRPC_FIX}`,
  /** callGrpcBranch of the testing entry could not reach `target`. */
  testingGrpcBranchUnreachable: (target: string, reason: string) =>
    `callGrpcBranch: could not reach the branch ${target} (${reason}); ${notGrpcAt(target, reason) ?? "check that the app's gRPC server listens there"}`,
  noAnswer: (url: string, timeoutSeconds: number, detail?: string) =>
    `no complete answer from ${url} within the timeout (${timeoutSeconds} s), on a connection it accepted${detail ? ` (${truncate(detail)})` : ''}: the DTM server may be overloaded, paused or waiting on its store, or a proxy in front of it holds the request; the request may or may not have reached DTM. If DTM is only slow, raise lynx.dtm.timeout`,
  branchNoAnswer: (url: string, timeoutSeconds: number, detail?: string) =>
    `no complete answer from the branch ${url} within its timeout (${timeoutSeconds} s), on a connection it accepted${detail ? ` (${truncate(detail)})` : ''}: the branch may be slow, stuck (on its database, a lock) or paused, or a proxy in front of it holds the call; the call may or may not have reached it. If the branch is only slow, raise lynx.dtm.branch_timeout`,
  answerCut: (url: string, status: number, cause: string) =>
    `the answer of ${url} (HTTP ${status}) broke off before its end (${cause}): the request reached the DTM server, which may have acted on it; the DTM server (crashed or restarting) or a proxy / load balancer in front of it closed the connection mid-answer`,
  branchAnswerCut: (url: string, status: number, cause: string) =>
    `the answer of the branch ${url} (HTTP ${status}) broke off before its end (${cause}): the call reached the branch, which may have acted on it; the branch (crashed or restarting) or a proxy / load balancer in front of it closed the connection mid-answer`,
  proxyUnavailable: (url: string, answer: string, cause: string, timeoutSeconds: number) =>
    `${url} answered ${grpcAnswerName(answer)}: most likely from a proxy, load balancer or gateway in front of the DTM server, which could not get an answer from it${
      answer === 'grpc'
        ? ', or, to a submit with waitResult, from DTM itself passing on the UNAVAILABLE of a gRPC branch it could not reach in the transaction\'s first round (DTM then holds the transaction submitted and retries the branch)'
        : ' (DTM itself answers no plain HTTP status to a gRPC call)'
    }; the request may or may not have reached DTM: ${truncate(cause)} (timeout ${timeoutSeconds} s)`,
  branchProxyUnavailable: (url: string, answer: string, cause: string, timeoutSeconds: number) =>
    `the branch ${url} answered ${grpcAnswerName(answer)}: most likely not the branch itself but a proxy, load balancer or gateway between this app and it, which could not get an answer from the branch (down, restarting, or slower than the proxy's timeout); the call may or may not have reached the branch: ${truncate(cause)} (timeout ${timeoutSeconds} s)`,
  answerTooLarge: (url: string, max: number) =>
    `${url} answered more than ${max} bytes (lynx.dtm.max_answer_bytes); the answer was not read. A query of a transaction with many large payloads can be that big: raise max_answer_bytes; otherwise check that lynx.dtm.server_url points at a DTM server`,
  branchFailureTooLarge: (url: string, max: number) =>
    `the branch ${url} answered FAILURE (HTTP 409) with a body of more than ${max} bytes (lynx.dtm.max_answer_bytes), not read: its reason is not known here`,
  branchOngoingTooLarge: (url: string, max: number) =>
    `the branch ${url} answered ONGOING (HTTP 425): not finished yet, with a body of more than ${max} bytes (lynx.dtm.max_answer_bytes), not read`,
  branchReplyNotDecodable: (url: string, bytes: number, reason: string) =>
    `the branch ${url} answered OK with a reply (${bytes} bytes) that does not decode as the method's reply type in the protos the module has (grpcProtos, or the app's own gRPC servers' protos): ${truncate(reason)}; check that the branch implements that method as those protos declare it`,
  branchAnswerTooLarge: (url: string, max: number) =>
    `the branch ${url} answered more than ${max} bytes (lynx.dtm.max_answer_bytes); the answer was not read: have the branch answer less, or raise max_answer_bytes`,
  answerNotDtm: (url: string, operation: string, got: string) =>
    `${url} answered ${operation} with ${got}, which is not what DTM answers; check that lynx.dtm.server_url (grpc_server over gRPC) points at a DTM server`,
  badGidFromDtm: (url: string, got: string) =>
    `${url} answered newGid with ${got}, which is not a gid (1 to 128 letters, digits and . _ : @ = -); check that lynx.dtm.server_url (grpc_server over gRPC) points at a DTM server`,
  serverStatus: (url: string, status: number, body: string) =>
    GATEWAY_STATUSES.has(status)
      ? `${url} answered HTTP ${status} (${GATEWAY_STATUSES.get(status)}): most likely from a proxy, load balancer or gateway in front of the DTM server, which could not get an answer from it (DTM itself answers 200, 409 or 500): ${truncate(body)}`
      : `${url} answered HTTP ${status}: ${truncate(body)}`,
  /** A branch the app called itself (a TCC Try, an XA action, a workflow step) answered ONGOING; `answered` is how (`HTTP 425`, `gRPC status 9`), `message` the branch's own (its JSON body's `message`), if any. */
  branchOngoing: (url: string, answered: string, message: string) =>
    `the branch ${url} answered ONGOING (${answered}): not finished yet${message === '' || message === 'ONGOING' ? '' : `, saying: ${truncate(redactText(message))}`}`,
  branchStatus: (url: string, status: number, body: string) =>
    GATEWAY_STATUSES.has(status)
      ? `the branch ${url} answered HTTP ${status} (${GATEWAY_STATUSES.get(status)}): most likely not the branch itself but a proxy, load balancer or gateway between this app and it, which could not get an answer from the branch (down, restarting, or slower than the proxy's timeout); the call may or may not have reached the branch: ${truncate(body)}`
      : `the branch ${url} answered HTTP ${status}: ${truncate(body)} (a branch must answer 200 for success, 409 for FAILURE, 425 for ONGOING)`,
  // DTM's text names a failed saga step's URL as given, credentials included
  failureFromDtm: (operation: string, gid: string, message: string) => `DTM refused ${operation} of ${gid}: ${redactText(message)}`,
  waitResultNotFinal: (gid: string, status: string, message: string) =>
    `${gid} did not succeed in DTM's first round (${truncate(message)}) and is "${status}": DTM goes on with it; use submitAndWait() or waitForFinal() for the final status`,
  firstRoundStatusUnknown: (gid: string, answer: string, queryError: string) =>
    `DTM took the submit of ${gid} and answered that its first round did not finish (${truncate(answer)}), but its status could not be asked then (query: ${truncate(queryError)}): DTM goes on with it, its outcome is not known yet. Wait for it with waitForFinal("${gid}"), never start it again under a new gid`,
  waitClosed: (gid: string, status: string) =>
    `the app closed while waiting for the outcome of ${gid} (${status === 'unknown' ? 'DTM may hold it' : `last known status "${status}"`}): the wait ended there, and DTM goes on with the transaction; look it up with waitForFinal("${gid}") or query("${gid}") from a running app, never start it again under a new gid`,
  notFinal: (gid: string, status: string, timeoutSeconds: number, lastError?: string) =>
    lastError === undefined
      ? `transaction ${gid} is still "${status}" after ${timeoutSeconds} s; DTM keeps retrying it: wait longer or query it later (with the same gid: never start it again under a new one)`
      : `the outcome of ${gid} is not known after ${timeoutSeconds} s: DTM could not be asked (${truncate(lastError)}); ${status === 'unknown' ? 'DTM may hold it' : `its last known status is "${status}", DTM goes on with it`}: wait again with waitForFinal("${gid}") or query it later, never start it again under a new gid`,
  badListFilter: (problem: string) => `list(filter): ${problem}; nothing was sent`,
  queryUnusable: (gid: string, cause: string) =>
    `the outcome of ${gid} is not known: DTM's answer to its status query could not be used (${truncate(cause)}). DTM goes on with the transaction: fix what the cause names, then wait with waitForFinal("${gid}") or query it; never start it again under a new gid`,
  recordTooLarge: (gid: string, status: string, final: boolean, timeoutSeconds: number, max: number) =>
    `${final ? `DTM holds ${gid} "${status}"` : `the outcome of ${gid} is not known after ${timeoutSeconds} s: DTM holds it "${status}"`}, read alone: its record with its branches is more than ${max} bytes (lynx.dtm.max_answer_bytes; it holds each branch's payload several times), so neither its branches nor that it holds the steps this app submitted could be read. Raise max_answer_bytes above the record's size, then wait with waitForFinal("${gid}") or query it; never start it again under a new gid`,
  submitAgain: (gid: string, status: 'absent' | 'prepared', lost?: string, neverSent = false, transType?: string) =>
    neverSent
      ? `DTM ${status === 'absent' ? `holds no transaction ${gid}` : `still holds ${gid} as prepared`}, and its submit did not reach DTM (${truncate(lost ?? '')}): submitting it again under the same gid`
      : `DTM ${status === 'absent' ? `holds no transaction ${gid}` : `still holds ${gid} as prepared`} ${lost === undefined ? 'although it accepted its submit' : `after a submit that may have reached it (${truncate(lost)})`}: submitting it again under the same gid (DTM v1.19 goes on when storing a submit failed, e.g. its store did not answer in time: ${status === 'absent' ? "it runs a saga's or message's branches with no record; a branch must take a repeated call" : transType === 'msg' ? 'it would back-check the message at its timeout' : 'it would roll the transaction back at its timeout'})`,
  notStoredAfterSubmit: (gid: string, status: 'absent' | 'prepared', timeoutSeconds: number, cause?: string, transType?: string, unanswered = false) =>
    status === 'absent'
      ? `the outcome of ${gid} is not known after ${timeoutSeconds} s: DTM holds no record of it ${cause === undefined ? 'although it accepted its submit' : `after a submit that may have reached it (${truncate(cause)})`}, and DTM v1.19 can run a transaction's branches without storing it. Submit the same transaction again under the same gid (call submitAndWait() again), never under a new one`
      : `the outcome of ${gid} is not known after ${timeoutSeconds} s: ${unanswered ? 'DTM answered no status query, and no submit of it reached DTM, which holds it prepared' : 'DTM still holds it prepared, so no submit of it got stored'}${cause === undefined ? '' : ` (the last: ${truncate(cause)})`}. DTM calls none of its branches meanwhile, and ${transType === 'msg' ? 'once its timeout_to_fail passed back-checks its query-prepared target and delivers it if the local transaction committed, unless a submit gets through first: call submitAndWait() again on the same Msg (DTM takes the submit of a message it holds prepared), or wait with' : 'rolls it back at its timeout_to_fail unless a submit gets through: wait with'} waitForFinal("${gid}") or query it later, never start it again under a new gid`,
  submitOutcomeUnknown: (gid: string, status: string, cause: string) =>
    `the submit of ${gid} may not have reached DTM (${truncate(cause)}), and DTM holds the transaction ("${status}"): its outcome is not known yet. Wait for it with waitForFinal("${gid}"), never start it again under a new gid`,
  submitMaybeLost: (gid: string, cause: string) =>
    `the submit of ${gid} may not have reached DTM (${truncate(cause)}): DTM holds the transaction prepared unless it did (then submitted). Its outcome is not known yet: wait for it with waitForFinal("${gid}"), never start it again under a new gid`,
  submitStatusUnknown: (gid: string, transType: string, cause: string, queryError: string) =>
    `the submit of ${gid} may or may not have reached DTM (${truncate(cause)}), and DTM could not be asked what it holds then (${truncate(queryError)}): it holds the transaction either prepared (no submit got through: it rolls it back at its timeout_to_fail) or submitted (it ${transType === 'xa' ? 'commits' : 'confirms'} the branches). Its outcome is not known yet: wait for it with waitForFinal("${gid}"), never start it again under a new gid`,
  submitTakenUnanswered: (gid: string, status: string, cause: string) =>
    `DTM took the submit of ${gid} and holds it "${status}", though its answer did not come (${truncate(cause)}); with waitResult DTM answers only once its first round of branch calls ended, which can outlast lynx.dtm.timeout. DTM goes on with the transaction: do not run it again; wait for its outcome with waitForFinal("${gid}")`,
  firstRoundUnfinished: (gid: string, status: string, cause: string) =>
    `DTM took the submit of ${gid} and holds it "${status}", but its first round did not finish (DTM passed on a branch's answer: ${truncate(cause)}): DTM retries the branch and goes on with the transaction. Do not run it again; wait for its outcome with waitForFinal("${gid}")`,
  msgFirstRoundUnfinished: (gid: string, status: string, cause: string) =>
    `the local transaction of msg ${gid} committed and DTM took its submit ("${status}"), but DTM's first round did not deliver every branch (DTM answered: ${truncate(cause)}): DTM delivers them later (after the message's delay, if it has one) and retries a branch until it succeeds (a branch's FAILURE cannot roll a message back: make it succeed, or answer an error). Do not run the local transaction again; wait for it with waitForFinal("${gid}")`,
  msgSubmitNotTaken: (gid: string, cause: string, asked: boolean, timeoutToFail: number, localCommitted: boolean) =>
    `${localCommitted ? `the local transaction of msg ${gid} committed, but its submit did not get through` : `the submit of msg ${gid} did not get through`} (${truncate(cause)}): ${asked ? 'DTM, asked after it, holds the message prepared (a submit still on its way to DTM may yet take it)' : 'it did not reach DTM, which answered no query either: DTM holds the message prepared'}. DTM back-checks its query-prepared target once its timeout_to_fail (${timeoutToFail} s) passed and delivers it if the local transaction committed; or submit it again now: submit() on the same Msg (DTM takes the submit of a message it holds prepared). ${localCommitted ? 'Do not run the local transaction again; wait' : 'Wait'} for it with waitForFinal("${gid}"), never send it again under a new gid`,
  preparedRecordLost: (gid: string, transType: string, cause: string | undefined, localCommitted: boolean) =>
    `${localCommitted ? `the local transaction of msg ${gid} committed, but its submit` : `the submit of ${transType === 'msg' ? 'msg ' : ''}${gid}`} ${cause === undefined ? 'was answered by DTM' : `may not have reached DTM (${truncate(cause)})`}, and DTM, asked after it, holds no record of ${gid}, though it took its prepare: DTM lost it (a store that did not keep it: Redis or boltdb restarted without its data, or its DataExpire passed), or the query reached another DTM than the prepare (lynx.dtm.server_url and grpc_server naming different DTMs, a load balancer over DTMs with stores of their own). ${
      transType === 'msg'
        ? `DTM back-checks and delivers no message it holds no record of (a submit that reached it while its store failed may deliver it without one). Check that server_url and grpc_server name the same DTM, then submit it again: submit() on the same Msg (DTM stores a submit of a gid it holds nothing of, and delivers it). ${localCommitted ? 'Do not run the local transaction again; never' : 'Never'} send it again under a new gid`
        : `DTM ${transType === 'xa' ? 'neither commits nor rolls back' : 'neither confirms nor cancels'} any branch of a transaction it holds no record of: ${transType === 'xa' ? 'the branches\' prepared XA transactions stay in their databases' : 'what the branches\' Trys reserved stays'} until each participant ends it, and a submit again would not reach them (DTM would store ${gid} with no branch). Check that server_url and grpc_server name the same DTM and query("${gid}"); never start it again under a new gid`
    }`,
  msgSubmitStatusUnknown: (gid: string, cause: string, queryError: string, localCommitted: boolean) =>
    `${localCommitted ? `the local transaction of msg ${gid} committed, but its submit` : `the submit of msg ${gid}`} may or may not have reached DTM (${truncate(cause)}), and DTM could not be asked what it holds then (${truncate(queryError)}): it holds the message either prepared (no submit got through: it back-checks its query-prepared target once its timeout_to_fail passed, and delivers it if the local transaction committed) or submitted (it delivers it). Its outcome is not known yet: ${localCommitted ? 'do not run the local transaction again; ' : ''}wait for it with waitForFinal("${gid}"), never send it again under a new gid`,
  dtmRefusedDefinitely: (operation: string, gid: string, cause: string, fix: string, body: string) =>
    `DTM refused ${operation} of ${gid}: ${cause}. Nothing of this call is stored or run, and DTM refuses it the same way each time: ${fix}. DTM answered ${body.startsWith('gRPC status') ? '' : 'HTTP 500: '}${truncate(body)}`,
  dtmGrpcRequestTooLarge: (size: string, limit: string) =>
    `DTM's gRPC server takes requests of at most ${limit} bytes (grpc-go's default, which DTM v1.19 keeps), and this one is ${size} bytes`,
  dtmGrpcRequestTooLargeFix:
    "send less: keep the transaction's payloads together under that size (pass large data by reference, an id the branch reads)",
  grpcServerNotDtm: (address: string, answer: string) =>
    `${address} is a gRPC server but not DTM's: it answered ${truncate(answer)} where DTM answers a method its service dtmgimp.Dtm does not have with UNIMPLEMENTED "unknown method ... for service dtmgimp.Dtm"; check that lynx.dtm.grpc_server is the DTM server's gRPC address (port 36790 by default), not another service's`,
  serverGrpcStatus: (endpoint: string, code: number, message: string) => `${endpoint} answered gRPC status ${code}: ${truncate(message)}`,
  payloadsOverDtmGrpcLimit: (where: string, kind: string, total: number, limit: number) =>
    `${where}: its payload takes the ${kind}'s payloads to ${total} bytes, over the ${limit} bytes (4 MiB) DTM's gRPC API takes in one request (grpc-go's default, which DTM v1.19 does not raise), where DTM gets them all at once (the ${kind === 'msg' ? 'prepare and the submit' : 'submit'}): DTM would refuse it (RESOURCE_EXHAUSTED) and hold nothing. Send less in each step (an id or a URL of the data, not the data), or split the work into several transactions`,
  branchRequestTooLarge: (endpoint: string, size: string, limit: string) =>
    `the gRPC server of the branch ${endpoint} refused the request: its ${size} bytes are over the server's limit, ${limit} bytes (maxReceiveMessageLength), before any handler saw it. DTM sends the branch's other ops (a Confirm or Cancel, a saga step's compensation) the same payload, which that server refuses too, and retries them forever: raise the server's maxReceiveMessageLength above the largest payload, or send less`,
  branchGrpcStatus: (endpoint: string, code: number, message: string) =>
    `the branch ${endpoint} answered gRPC status ${code}: ${truncate(message)} (a gRPC branch answers OK for success, ABORTED for FAILURE, FAILED_PRECONDITION for ONGOING)`,
  grpcNotInstalled: (name: string) =>
    `${name} is not installed, and the gRPC protocol needs it: npm install @grpc/grpc-js @grpc/proto-loader (or use protocol: http)`,
  grpcProtosUnreadable: (reason: string) => `cannot load the protos (${reason}); fix grpcProtos.protoPath (paths are relative to the working directory) or the .proto file`,
  grpcServerProtosUnreadable: (where: string, url: string, protoPath: string, reason: string) =>
    `cannot load the protos of the app's gRPC server at ${url} (${where}: ${reason}); fix the protoPath of that gRPC microservice's options (${protoPath}; paths are relative to the working directory) or the .proto file: the module reads the services it serves from them, as Nest does`,
  grpcPayloadNeedsProto: (target: string) =>
    `the payload of ${target} is an object, but the module knows no proto declaring that method (neither grpcProtos nor the protos of this app's gRPC servers): add its .proto to DtmModule.forRoot({ grpcProtos: { protoPath } }), or pass the encoded message as a Uint8Array`,
  /** `near`: the field `key` names once case and underscores are ignored (`user_id` for `userId`), if any. */
  grpcPayloadUnknownField: (type: string, key: string, fields: readonly string[], of?: string, near?: string) =>
    `${type} has no field ${JSON.stringify(key.slice(0, 100))}, which protobuf would drop: its fields${of ? ` (of ${of})` : ''} are ${fields.join(', ') || 'none'}${
      near === undefined ? '' : `; spell it ${JSON.stringify(near)}, as the loader options of the protos name that field (keepCase: false, the default, camelCases the .proto's names; true keeps them)`
    }`,
  grpcPayloadFieldValue: (type: string, field: string, proto: string, want: string, got: string) =>
    `field ${JSON.stringify(field.slice(0, 100))} (${proto}) of ${type} takes ${want}, got ${got}, which protobuf would not send as it is`,
  grpcPayloadNotEncodable: (target: string, reason: string) => `the payload of ${target} does not fit the method's request type (${reason}); fix the object`,
  grpcPayloadType: (target: string, type: string) => `the payload of the gRPC branch ${target} must be an object or a Uint8Array of protobuf, got ${type}`,
  /** `value` undefined: not shown (a header that looks like a credential). */
  grpcMetadataValue: (what: string, value: string | undefined) =>
    `${what} ${value === undefined ? '(value not shown: the header looks like a credential)' : JSON.stringify(value)} cannot travel as gRPC metadata, which DTM sends to every gRPC branch: use printable ASCII (DTM would fail every branch call and retry it forever)`,
  signedHeaderNotAscii: (name: string) =>
    `branch header ${name} has a value that is not printable ASCII: with lynx.dtm.branch_auth_keys its value is signed, and DTM delivers it as UTF-8 bytes that the branch reads as another value, so every call DTM makes would be refused; encode it (e.g. percent-encoding)`,
  signedHeaderNotGrpc: (name: string) =>
    `branch header ${name} cannot be signed for gRPC branches (lynx.dtm.branch_auth_keys): gRPC clients replace user-agent, and a -bin value arrives as bytes, so every call DTM makes would be refused; use another name`,
  /** `value` undefined: not shown (a header that looks like a credential). */
  grpcMetadataSpaces: (name: string, value: string | undefined) =>
    `branch header ${name} ${value === undefined ? '(value not shown: the header looks like a credential)' : JSON.stringify(value)} has spaces around its value, which a gRPC branch never receives (HTTP/2 forbids them; the branch would get no such header): remove them`,
  grpcMetadataKey: (name: string) =>
    `branch header ${JSON.stringify(name)} cannot be a gRPC metadata key, which DTM sends to every gRPC branch: use lower-case [0-9a-z._-], not starting with grpc-`,
  grpcMetadataInvalid: (reason: string) =>
    `a value cannot travel as gRPC metadata (${reason}): gids and branch header values must be printable ASCII, header names lower-case [0-9a-z._-]`,
  grpcTargetOverHttp: (target: string) =>
    `${redactUrl(target)} is a gRPC target, which DTM cannot call in a transaction it receives over HTTP: create the transaction with { protocol: 'grpc' } (or lynx.dtm.protocol: grpc)`,
  protocolFixed: (gid: string, protocol: string) => `${gid} was created for ${protocol}; a transaction's protocol is chosen when it is created (newSaga(gid, { protocol }))`,
  msgConcurrentOverGrpc: (gid: string) => `msg ${gid}: DTM's gRPC API cannot carry concurrent messages; create it with { protocol: 'http' } to use enableConcurrent()`,
  unknownTransaction: (gid: string) => `DTM has no transaction ${gid}`,
  gidInUse: (operation: string, gid: string, status: string, detail: string) =>
    `DTM refused ${operation} of ${gid}: it already holds a transaction ${gid} that is "${status}" (${truncate(detail)}). Nothing of this ${operation} ran: its branches were not called, and that transaction's outcome is not this one's. A gid names one transaction: use a new one (generateGid())`,
  foreignDtm: (named: string, key: string, configured: string) =>
    `a branch call named ${named} as its DTM server (the dtm query parameter, or dtm-dtm metadata over gRPC), which is not lynx.dtm.${key} (${configured}): the module talks only to the DTM server it is configured with, so the branch is registered there (and fails if that server has no such transaction). Logged once per name`,
  branchHeaderTwice: (names: string[]) => `branch headers ${names.join(' and ')} are one header (names are case-insensitive); give it once`,
  branchHeaderForbidden: (name: string) =>
    `branch header ${JSON.stringify(name)} describes the request that carries it (framing, content type or encoding, connection, proxy: DTM gives each branch call its own, and one given here would replace it, e.g. DTM would send the JSON payload as text/plain, which a branch reading JSON may then not parse), or is DTM's or gRPC's own metadata (dtm-*, grpc-*): it cannot be set for every branch call; remove it`,
  branchHeadersTooLarge: (bytes: number, max: number, tokens: number | undefined) =>
    `the branch headers take ${bytes} bytes as DTM sends them to an HTTP branch (each "name: value" and a line end${tokens === undefined ? '' : `; the tokens of DTM's calls, lynx.dtm.branch_auth_keys, take ${tokens} of them, one per step and op`}), over the ${max} the module allows: a Node.js branch refuses a call whose headers pass 16 KiB (431, before any handler runs, http.maxHeaderSize), and DTM would retry every call for ever, the transaction never ending. ${tokens === undefined ? 'Forward less (an id to look up, not the data; fewer pass_through_headers)' : 'Split the work into transactions of fewer steps, or forward less'}`,
  branchHeaderNotString: (name: string, got: unknown) => `branch header ${JSON.stringify(name)} must have a string value, got ${typeof got}`,
  httpHeaderName: (name: string) =>
    `branch header ${JSON.stringify(name)} is not an HTTP header name (letters, digits and !#$%&'*+.^_\`|~-, no spaces): DTM could never send it, and would retry every branch call forever; fix the name`,
  httpHeaderValue: (name: string) =>
    `branch header ${JSON.stringify(name)} has a line break or another control character in its value: DTM could never send it, and would retry every branch call forever; remove it`,

  // building transactions
  targetControl: (target: string) =>
    `branch target ${JSON.stringify(redactUrl(target).slice(0, 200))} holds a space, a line break or another control character: DTM could never call it, and would retry it forever; fix it`,
  targetNotString: (got: unknown) => `a branch target must be a string (a URL, a gRPC host:port/package.Service/Method, or a branch name), got ${typeof got}`,
  targetScheme: (target: string) =>
    `${redactUrl(target)}: DTM calls http(s):// URLs and gRPC targets host:port/package.Service/Method (no scheme; discovery drivers such as etcd:// exist only in DTM's Go SDK); use one of those`,
  targetMalformed: (target: string) =>
    `${redactUrl(target)} is neither a URL (http(s)://...), nor a gRPC target (host:port/package.Service/Method), nor a branch name; fix it`,
  emptyTarget: (role: string) => `the ${role} target is empty, but the module must call it; give a URL, a gRPC target or a branch name`,
  topicOutsideMsg: (target: string, role: string) => `${redactUrl(target)}: topics are for message branches, not a ${role}`,
  mixedTransports: (what: string, targets: [op: string, target: string][]) =>
    `${what} has its ops on different transports (${targets.map(([op, target]) => `${op} ${redactUrl(target)}`).join(', ')}): DTM sends the one payload of a step or TCC branch to each of its ops, encoded for one transport, so the other ops could not read it and DTM would retry them forever. Put all of its ops on one transport: give targets of one kind (all http(s):// URLs, or all gRPC host:port/package.Service/Method), or serve every handler of the branch name on the same transport (each with a @GrpcMethod, or none of them)`,
  notCallable: (target: string) => `${redactUrl(target)} cannot be called directly (only http(s):// URLs and gRPC targets can)`,
  compensateNotString: (got: unknown) =>
    `the compensation must be a target string ('' for none), got ${typeof got}: pass add(action, compensate, payload), or add(target, payload) for a step without one`,
  emptyPayload: () => 'a branch payload must not be an empty string (DTM would call the branch with GET and no body); pass {} or a non-empty string',
  bufferNotUtf8: () => "a Buffer payload must be valid UTF-8: DTM's HTTP API carries payloads as strings; encode binary data (e.g. base64) first",
  payloadNotSerializable: (reason: string) => `the payload cannot be JSON-encoded (${reason}); pass a plain object, an array, a string or a Buffer`,
  badStepIndex: (step: unknown, count: number) =>
    typeof step === 'number' ? `step ${step} does not exist: the saga has ${count} step(s), numbered from 0` : `a step is given by its index, a whole number from 0 to ${count - 1}, got ${typeof step} ${JSON.stringify(step) ?? ''}`,
  preStepsNotArray: (step: unknown, got: unknown) => `addBranchOrder(${JSON.stringify(step) ?? String(step)}, preSteps): preSteps must be an array of step indexes, got ${got === null ? 'null' : typeof got}`,
  branchOrderNotConcurrent: (step: number, pre: readonly number[], later: number) =>
    `addBranchOrder(${step}, [${pre.join(', ')}]): without enableConcurrent() DTM runs the steps one after another, in the order they were added, and ignores branch orders, so step ${step} would run before step ${later}, which it waits for; call enableConcurrent(), or add the steps in that order`,
  branchOrderCycle: (cycle: number[]) =>
    `the saga's branch orders wait in a circle (${cycle.join(' → ')}): DTM would call none of those steps and the saga would never finish; remove one of the orders`,
  tccRegisterFailureSwallowed: (gid: string, branchId: string, cause: string) =>
    `the body of tcc ${gid} went on after registering its branch ${branchId} failed (${truncate(cause)}): the branch's Try never ran, and DTM may hold the branch, so a submit would have DTM confirm work that was never tried. The transaction is aborted instead: let the error of callBranch() end the body (or abort), never catch it and carry on`,
  branchCallFailureSwallowed: (transType: string, gid: string, branchId: string, op: string, cause: string) =>
    transType === 'tcc'
      ? `the body of tcc ${gid} went on after the Try of its branch ${branchId} failed (${truncate(cause)}): DTM holds the branch, and a submit would have DTM confirm it, work whose Try failed or may not have run. The transaction is aborted instead (DTM cancels its branches): let the error of callBranch() end the body, never catch it and carry on`
      : `the body of ${transType} ${gid} went on after the ${op} of its branch ${branchId} failed (${truncate(cause)}): its work was not prepared (or may not have been), and a submit would have DTM commit the other branches without it. The transaction is aborted instead (DTM rolls its branches back): let the error of callBranch() end the body, never catch it and carry on`,
  branchCallAfterBody: (transType: string, gid: string) =>
    `${transType} ${gid}: callBranch() after the body of the transaction ended (the transaction was submitted or aborted then): DTM takes no branch of it any more, and ${transType === 'tcc' ? 'a Try run now would be neither confirmed nor cancelled' : 'an action run now would be neither committed nor rolled back with it'}. Nothing was sent; call (and await) every branch inside the body`,
  branchCallsOutlivedBody: (transType: string, gid: string, count: number) =>
    `the body of ${transType} ${gid} returned while ${count} callBranch() it started ${count === 1 ? 'was' : 'were'} still under way (not awaited): a submit then would have DTM ${transType === 'tcc' ? 'confirm a branch whose Try had not answered, or failed' : 'commit the branches while an action had not prepared, or failed'}. The module waited for ${count === 1 ? 'it' : 'them'} to end and aborted the transaction instead (DTM ${transType === 'tcc' ? 'cancels' : 'rolls back'} its branches): await every callBranch() in the body (await Promise.all([...]) for calls in parallel)`,
  tccConfirmCancelMissing: (tryTarget: string) =>
    `tcc.callBranch(payload, ${JSON.stringify(redactUrl(tryTarget))}, confirm, cancel): a Try given as a target needs its Confirm and Cancel targets (strings; '' only when there is nothing to undo), else the Try's work would never be confirmed or cancelled`,
  optionsAfterSent: (transType: string, gid: string, call: string) =>
    `${transType} ${gid}: setOptions() after ${call}: DTM keeps the options of the ${call} call (a submit of a prepared transaction carries new ones to DTM's first round only; its retries and its timeout keep the stored ones), so they would not take effect, or only partly; set the options before ${call}: in new${transType === 'msg' ? 'Msg' : 'Saga'}(gid, options) or with setOptions()`,
  sagaChangedAfterSubmit: (gid: string, what: string) =>
    `saga ${gid}: ${what} after submit(): DTM keeps the steps of the submit it took (a finished saga is not run again, a running one would run the new steps over it), so this would silently never take effect, or only partly; add the steps and orders before submit()`,
  msgBusinessAgain: (gid: string) =>
    `msg ${gid}: doAndSubmit() again, after an earlier doAndSubmit() of this message ran its local transaction: DTM takes the prepare of a message it holds prepared, so the local transaction would run (and may commit) a second time. Nothing was sent or run. DTM holds the message and decides it from the first run (its back-check asks whether that one committed): wait for the outcome with waitForFinal(gid), never run the local transaction again`,
  msgPreparedOverAnother: (transType: string) =>
    `${transType === 'msg' ? 'another message, with other branches' : `a ${transType}`}, prepared: DTM v1.19 took this prepare for it (it takes a prepare of any gid it holds prepared), and a submit would have DTM deliver ${transType === 'msg' ? "that message's branches, never this one's" : `that ${transType}'s branches as this message`}; its local transaction was not run`,
  globalPreparedOverAnother: (own: string, transType: string) =>
    `${transType === own ? `another ${own}` : `a ${transType}`}, prepared: DTM v1.19 took this ${own}'s prepare for it (it takes a prepare of any gid it holds prepared), and this one's branches would have joined it, its submit confirming (committing) the other's branches, its abort cancelling them; the body was not run and nothing more was sent. Use a gid of its own (generateGid(), or one unique per business operation)`,
  msgPrepareAfterSubmit: (gid: string) =>
    `msg ${gid}: prepare() after submit(): DTM holds the message submitted (delivered, or being delivered) and refuses a prepare of it, which would read as a failure of the message; nothing was sent. Read its outcome with waitForFinal(gid) or query(gid); another message needs a Msg and a gid of its own`,
  msgPrepareOtherCheck: (gid: string, check: string, first: string) =>
    `msg ${gid}: prepare() again with another back-check (${truncate(check)}, first ${truncate(first)}): DTM keeps the back-check of the first prepare and asks only that one, while doAndSubmit() would ask this one; nothing was sent. Prepare a message once, or again with the same back-check`,
  msgChangedAfterPrepare: (gid: string, what: string) =>
    `msg ${gid}: ${what} after prepare(): DTM builds a message's branches (and keeps its delay and concurrency) from the prepare call only, so this would silently never take effect; add the steps and set the delay / concurrency before prepare()`,
  notAFunction: (what: string, got: unknown) => `${what} must be a function, got ${got === null ? 'null' : typeof got}`,
  outboxCheckWithoutBarrier: (gid: string, name: string, check: { handler: string; barrier?: string; store?: string }, dialect: string) =>
    `doAndSubmitDb("${name}", db, business) of msg ${gid}: its back-check @MsgQueryPrepared('${name}') on ${check.handler} ${check.barrier === undefined ? 'has no barrier' : `has the barrier '${check.barrier}', which stores in ${check.store ?? 'an unknown connection'}`}, so it cannot see the barrier row the local transaction commits on ${dialect}: it would answer for a local transaction that failed as if it had committed (the message delivered) or for one that committed as if it had not (the message lost); give the handler the barrier of that database (@UseBarrier('<name>') on its controller, or @MsgQueryPrepared('${name}', { barrier: '<name>' }), a ${dialect} connection of barrierConnections); nothing was sent`,
  barrierDbMissing: (got: unknown) =>
    `doAndSubmitDb(queryPrepared, db, business): db must be a barrier database (pgBarrierDatabase(pool), mysqlBarrierDatabase(pool), typeormBarrierDatabase(dataSource)), got ${got === null ? 'null' : typeof got === 'object' ? 'an object without transaction() and dialect postgres / mysql (a pool not wrapped?)' : typeof got}; nothing was sent. For a Redis outbox use doAndSubmit(queryPrepared, business) with BranchBarrier.from(local).redisCheckAdjustAmount(redis, key, amount) as the local work`,
  barrierWithoutCall: (got: string) =>
    `a barrier belongs to one branch call: pass its @BranchContext() (transType, gid, branchId and op as DTM sent them), got ${got}`,
  barrierKeysRefused: (problem: string) =>
    `a barrier's transType, gid, branchId and op are its branch call's, as DTM sent them (pass its @BranchContext()): ${problem}; nothing was written`,
  optionNotBoolean: (option: string, got: unknown) => `${option} must be true or false, got ${JSON.stringify(got) ?? typeof got}`,
  notAnObject: (what: string, got: unknown) => `${what} must be an object, got ${got === null ? 'null' : typeof got}`,
  badProtocol: (got: unknown) => `protocol must be 'http' or 'grpc', got ${JSON.stringify(got) ?? typeof got}`,
  badTopic: (got: unknown) => `a topic must be a non-empty string (the name DTM's topic was subscribed under), got ${JSON.stringify(got) ?? typeof got}`,
  optionRange: (option: string, min: number, max: number, unit: string, why: string, got: unknown) =>
    `${option} must be a whole number of ${unit} from ${min} to ${max} (${why}), got ${typeof got === 'number' ? got : JSON.stringify(got) ?? typeof got}`,
  unknownTransactionOption: (key: string, suggestion: string | undefined, known: readonly string[]) =>
    `the transaction options have no ${JSON.stringify(key.length > 60 ? `${key.slice(0, 60)}…` : key)}${suggestion ? `; did you mean "${suggestion}"?` : ''} (they are ${known.join(', ')}, in camelCase, every duration in seconds); an option the module does not know would be dropped, the transaction going with its default`,
  retryLimitNotSaga: (transType: string, gid: string) =>
    `${transType} ${gid}: retryLimit is a saga option: DTM v1.19 reads it for sagas only, and would store it with this ${transType} without ever applying it (DTM retries its branches until they answer, at the retry interval); leave it out`,
  retryLimitZero: () =>
    `retryLimit 0 is DTM's "no limit", not "no re-run": DTM v1.19 reads a saga's retry limit only when it is above 0, and retries a failing action until it succeeds, never rolling the saga back for it; it cannot roll back at an action's first error. Leave retryLimit unset for no limit, or give 1 or more (the re-runs of failing actions DTM makes before it rolls the saga back)`,
  waitOptionRange: (option: string, min: number, max: number, got: unknown) =>
    `waitForFinal's ${option} must be a number of seconds from ${min} to ${max} (Node's timers stop at 2147483647 ms), got ${typeof got === 'number' ? got : JSON.stringify(got) ?? typeof got}`,
  waitOptionUnknown: (key: string) =>
    `waitForFinal's options take timeout and pollInterval (both in seconds), not ${JSON.stringify(key)}${/^timeout/i.test(key) && key !== 'timeout' ? ': use timeout, in seconds' : ''}`,
  waitOptionsNotObject: (got: unknown) =>
    `waitForFinal's options must be an object ({ timeout, pollInterval }, in seconds), got ${Array.isArray(got) ? 'an array' : typeof got === 'number' ? `${got}: use { timeout: ${got} }` : typeof got}`,
  badGid: (gid: unknown) => `gid must be a non-empty string without spaces, got ${JSON.stringify(gid)}; use generateGid()`,
  gidRefused: (gid: string, problem: string) =>
    `gid ${JSON.stringify(gid.length > 60 ? `${gid.slice(0, 60)}…` : gid)} cannot be used: ${problem}; nothing was sent to DTM. Use generateGid(), or a business id such as order-7 or Order_7:2026`,
  keyEmpty: (what: string) => `the ${what} is empty`,
  keyTooLong: (what: string, length: number, max: number) =>
    `the ${what} is ${length} characters, over the limit of ${max} (DTM's SQL stores and the barrier table keep it in varchar(${max}))`,
  keyCharacter: (what: string, character: string, position: number) =>
    `the ${what} has ${character} at position ${position} (gids and branch ids are printable ASCII without spaces, quotes, backslashes or ';')`,
  transTypeUnknown: (types: readonly string[]) => `the trans_type is none DTM sends (${types.join(', ')}, in lower case)`,
  opUnknown: (ops: readonly string[]) => `the op is none DTM sends (${ops.join(', ')}; a workflow's resume, trans_type workflow and branch 00, its name)`,
  rpcExceptionUnavailable: (error: string) =>
    `@nestjs/microservices' RpcException could not be loaded (${error}): a call to a gRPC method without a branch decorator that @BranchContext() refuses is answered UNKNOWN, which DTM retries, instead of ABORTED; check that @nestjs/microservices is installed once, beside @nestjs/core`,
  branchKeysRefused: (problem: string) => `branch call refused: ${problem}; the handler did not run and nothing was written`,
  branchIdOverflow: (parent: string) => `no more sub-branch ids under "${parent}": DTM's ids go up to 99 per level and 20 characters in all`,
  branchQueryMissing: (where: string, missing: readonly string[]) =>
    `${where} ${BRANCH_KEYS_MISSING} ${missing.join(', ')} (DTM sends gid, trans_type, branch_id and op: in the query over HTTP, as dtm-* metadata over gRPC); the handler did not run`,
  branchBodyTooLarge: (max: number) =>
    `a DTM branch call's body may be at most ${max} bytes (a fixed limit of nestjs-dtm, no setting raises it); this one is larger, and was not read: send less in the step (an id or a URL of the data, not the data)`,
  branchBodyTooLargeRefused: (path: string, call: { gid: string; branchId: string; op: string; transType: string }, size: string, max: number, status: number) =>
    `a DTM branch call to ${shownCallerValue(path)} (gid ${shownCallerValue(call.gid)}, branch ${shownCallerValue(call.branchId)}, op ${shownCallerValue(call.op)}) was answered ${status} before Nest routed it: its body, ${size}, is over the ${max} bytes a branch call's body may have (no guard, handler, hook, span or metric of the app sees it); ${
      status === 409 ? (call.transType === 'msg' ? 'FAILURE, which DTM retries for ever: a message has no rollback' : 'FAILURE: DTM rolls the transaction back') : status === 200 ? 'success without running the handler (its action was refused the same way)' : 'DTM retries it'
    }. Send less (an id of the data, not the data)`,
  branchContextTransport: (where: string, type: string) =>
    `${where} asks for @BranchContext(), but serves a ${type} call: DTM calls branches over HTTP or gRPC only`,
  branchError: (where: string, protocol: string, info: { gid: string; branchId: string; op: string; transType: string } | undefined, detail: string) =>
    `${where} failed (${protocol}${info ? `, ${info.transType} gid ${info.gid}, branch ${info.branchId}, op ${info.op}` : ''}); ${
      info && (info.op === 'try' || (info.transType === 'xa' && info.op === 'action'))
        ? `the app running the transaction gets the error and aborts it (DTM never calls a ${info.op === 'try' ? 'TCC Try' : 'XA action'} itself, so nothing retries it)`
        : 'DTM will retry the call'
    }: ${detail}`,
  beforeBranchHandler: (path: string) =>
    `the branch call to ${shownCallerValue(path)}, before its handler and the module's checks ran (a request-scoped controller or provider Nest could not make for it, or a guard of the app ahead of the module's),`,
  ownBranchHandlerFailed: (endpoint: string, answered: string, handler: string, message: string, step?: string) =>
    `the branch ${endpoint} answered ${answered}: ${step ? `the ${step} of the module's local XA transaction around its handler ${handler}, in this app, failed (not the handler's business)` : `its handler ${handler}, in this app, threw`}: ${truncate(message)} (logged with its stack by DtmBranch; DTM's rollback reason does not hold it)`,
  branchWrongOp: (where: string, op: string, ops: readonly string[]) =>
    `${where} serves op=${ops.join(' / ')}, but this call has op=${shownCallerValue(op)}: the URL registered with DTM for op=${shownCallerValue(op)} points at the wrong handler; the handler did not run`,
  failureCannotRollBack: (where: string, kind: string, info: { gid: string; branchId: string; op: string; transType: string }, what = 'DtmFailureError') =>
    `${where} (${kind}, ${info.transType} gid ${info.gid}, branch ${info.branchId}, op ${info.op}) threw ${what}, but a FAILURE here cannot roll anything back: DTM keeps retrying this call until it succeeds. Make the handler succeed (the barrier makes repeated and out-of-order calls harmless), or throw another error to have it retried`,
  resultBody: (where: string, result: string, body: string) =>
    `${where} answered 200 with a body DTM reads as ${result} (${truncate(body)}): answered as ${result}, as if the handler threw ${result === 'FAILURE' ? 'DtmFailureError' : 'DtmOngoingError'} (its local transaction rolled back); throw that error instead`,
  pipeFailureCannotRollBack: (where: string, kind: string, info: { gid: string; branchId: string; op: string; transType: string }, problem: string, by: 'before' | 'handler' | 'after' | undefined = 'before') =>
    `${where} (${kind}, ${info.transType} gid ${info.gid}, branch ${info.branchId}, op ${info.op}): ${
      by === 'before'
        ? `a pipe refused its payload (${truncate(problem)})`
        : by === 'after'
          ? `its handler ran, and then an interceptor of the app refused its answer (${truncate(problem)})`
          : by === 'handler'
            ? `its handler refused it (${truncate(problem)}), its local transaction rolled back`
            : `its handler ran, and the call was refused (${truncate(problem)}): the handler's own refusal, or an interceptor of the app refusing its answer after it ran`
    }, answered FAILURE, but a FAILURE here cannot roll anything back: DTM keeps retrying this call with the same payload until it succeeds. ${
      by === 'before' ? "Fix the payload the transaction sends, or what the handler's DTO / pipe accepts" : by === 'after' ? "Fix the interceptor: let DTM's branch calls through (isDtmBranchHandler)" : 'Fix what refused it: such a handler must not refuse its call; let DTM\'s branch calls through interceptors (isDtmBranchHandler)'
    }`,
  pipeRefusedUndo: (where: string, kind: string, info: { gid: string; branchId: string; op: string; transType: string }, problem: string) => {
    if (info.transType === 'workflow') {
      // a workflow's onRollback callback sends its own payload (not the action's), again at every resume; DTM holds the workflow prepared
      return `${where} (${kind}, workflow gid ${info.gid}, branch ${info.branchId}, op ${info.op}): a pipe refused its payload (${truncate(problem)}), so this compensation did not run. The workflow's onRollback callback of this step sent that payload and sends it again at every resume of DTM's: the workflow stays pending (DTM holds it prepared, executeWorkflow throws DtmWorkflowPendingError) and its rollback stops here (the steps before it are not compensated yet); the module never answers success for an undo that did not run. Fix the payload the callback sends, or the handler: give it a parameter type the pipe leaves alone (the contract's type, BranchPayload<...>, or an interface) and a barrier, which skips the undo of an action that never ran; DTM's next resume then ends the rollback. Or, once you know there is nothing to undo, end it with forceStop. Logged once per transaction and branch (later refusals at debug level)`;
    }
    const tcc = kind === 'tcc-cancel';
    const [undo, action] = tcc ? ['Cancel', 'Try'] : ['compensation', 'action'];
    return `${where} (${kind}, ${info.transType} gid ${info.gid}, branch ${info.branchId}, op ${info.op}): a pipe refused its payload (${truncate(problem)}), so this ${undo} did not run, and no retry changes that: DTM sends it the payload of its ${action}, the same at every retry, and retries it until it answers success, so the ${tcc ? 'TCC' : info.transType} stays aborting${tcc ? '' : ' (the compensations of the steps before it wait behind this one)'}. A pipe that validates the ${action} alike (a global ValidationPipe, one DTO class on both) refused this payload there too, so the ${action} likely never ran; the module cannot know that, and never answers success for an undo that did not run. Fix the handler: give the ${undo} a parameter type the pipe leaves alone (the contract's type, BranchPayload<...>, or an interface) and a barrier, which skips the undo of an ${action} that never ran; DTM's next retry then ends the rollback. Or, once you know there is nothing to undo, end it with forceStop. Logged once per transaction and branch (later refusals at debug level)`;
  },
  undoValidatedLikeAction: (undo: string, kind: string, name: string, type: string, action: string, pipes: readonly string[]) => {
    const [decorator, what, act] = kind === 'tcc-cancel' ? ['@TccCancel', 'Cancel', 'Try'] : ['@SagaCompensate', 'compensation', 'action'];
    return `${undo} (${decorator}('${name}')) takes its payload as ${type}, as its ${act} ${action} does, under the pipe${pipes.length > 1 ? 's' : ''} ${pipes.join(', ')}: DTM sends the ${what} the payload of its ${act}, so if ${pipes.length > 1 ? 'one of them validates' : 'it validates'} (a ValidationPipe), a payload refused on the ${act} (answered FAILURE: DTM rolls back) is refused on the ${what} too, which then never runs: DTM retries it forever, and the transaction stays aborting. Give the ${what} a parameter type the pipe leaves alone (the contract's type, BranchPayload<...>, or an interface) and a barrier, which skips the undo of an ${act} that never ran (docs/branches.md, "The undo of a refused payload")`;
  },
  interceptorRefusedUndo: (where: string, kind: string, info: { gid: string; branchId: string; op: string; transType: string }, status: number, problem: string, by: 'handler' | 'after' | undefined) => {
    const tcc = kind === 'tcc-cancel';
    const [undo, action] = tcc ? ['Cancel', 'Try'] : ['compensation', 'action'];
    const stays =
      info.transType === 'workflow'
        ? "the workflow's onRollback callback calls it again at every resume of DTM's, and the workflow stays pending (DTM holds it prepared, executeWorkflow throws DtmWorkflowPendingError)"
        : `DTM retries the call until it answers success and the ${tcc ? 'TCC' : info.transType} stays aborting${tcc ? '' : ' (the compensations of the steps before it wait behind this one)'}`;
    const head = `${where} (${kind}, ${info.transType} gid ${info.gid}, branch ${info.branchId}, op ${info.op})`;
    const tail = 'Logged once per transaction and branch (later refusals at debug level)';
    if (by === 'after') {
      return `${head}: its handler ran (behind a barrier: its local transaction committed, or the barrier skipped a ${undo} already done), and then an interceptor of the app answered its answer with ${status} (${truncate(problem)}): the module answers that FAILURE, which a ${undo} cannot roll back, so ${stays}, for as long as the interceptor refuses the answer. Fix the interceptor: let DTM's branch calls through (isDtmBranchHandler). ${tail}`;
    }
    const handlerFix = `a ${undo} must not refuse its call (DTM sends it the payload of its ${action}, the same at every retry): answer success when there is nothing to undo, or throw an error DTM retries while it cannot undo yet`;
    if (by === 'handler') {
      return `${head}: its handler answered ${status} itself (${truncate(problem)}), which rolled its local transaction back, so this ${undo} did not apply: the module answers that FAILURE, which a ${undo} cannot roll back, so ${stays}, for as long as the handler refuses it. Fix the handler: ${handlerFix}. ${tail}`;
    }
    return `${head}: its handler ran, and the call was answered ${status} (${truncate(problem)}): the handler's own refusal, or an interceptor of the app refusing its answer after it ran (the module cannot tell them apart without a barrier): the module answers that FAILURE, which a ${undo} cannot roll back, so ${stays}, for as long as it is refused. Fix whichever refused it: let DTM's branch calls through the interceptor (isDtmBranchHandler); in the handler, ${handlerFix}. ${tail}`;
  },
  pipeRefusedUndoAgain: (where: string, info: { gid: string; branchId: string; op: string; transType: string }, by: 'before' | 'handler' | 'after' | undefined = 'before') =>
    `${where} (${info.transType} gid ${info.gid}, branch ${info.branchId}, op ${info.op}): ${by === 'before' ? 'a pipe refused its payload again' : by === 'after' ? 'an interceptor of the app refused its answer again, after the handler ran' : by === 'handler' ? 'its handler refused it again' : 'it was refused again, after the handler ran'}; the ${info.transType} stays ${info.transType === 'workflow' ? 'pending' : 'aborting'} (see the error logged at its first refusal)`,
  successBodyHasResultWord: (where: string, body: string) =>
    `${where} answered 200 with a body containing FAILURE or ONGOING, which DTM would read as that result instead of success: ${truncate(body)}. The answer was replaced by a 500 (in production, NODE_ENV=production, it is sent as it is)`,
  successBodyRefused: (where: string) =>
    `${where} returned a success body containing one of the result words DTM scans bodies for; it was not sent (see the server log)`,
  duplicateBranch: (decl: string, handlers: string[], transport: string) =>
    `${decl} is served over ${transport} by ${handlers.join(' and ')}: a branch name has one handler per transport; rename one`,
  branchOnBothTransports: (decl: string, httpHandler: string, grpcHandler: string) =>
    `${decl} is served over HTTP by ${httpHandler} and over gRPC by ${grpcHandler}: HTTP transactions call the route, gRPC transactions the gRPC method`,
  grpcBranchOverHttp: (decl: string, handler: string) =>
    `${decl} is served over gRPC only (${handler}), which DTM cannot call in a transaction it receives over HTTP: create the transaction with { protocol: 'grpc' } (or lynx.dtm.protocol: grpc), or give the handler an HTTP route too`,
  noGrpcAppAddress: (where: string) =>
    `cannot build the gRPC target of ${where}: lynx.dtm.grpc_app_address is not set and the app has no gRPC server yet; set grpc_app_address (host:port at which DTM reaches this app's gRPC server), or connect the gRPC microservice first`,
  grpcPortZero: (where: string, url: string) =>
    `cannot build the gRPC target of ${where}: the gRPC server listens on ${url}, port 0, whose real port grpc-js picks when it binds and Nest does not tell, so DTM could never reach it; give the server a fixed port (in a test: freeLocalPort() of nestjs-dtm/testing), or set lynx.dtm.grpc_app_address`,
  grpcAppAddressFromListen: (address: string) =>
    `lynx.dtm.grpc_app_address is not set: gRPC branch targets use ${address}, the address the gRPC server listens on, which DTM can only reach when it runs on the same host; set grpc_app_address to this service's gRPC address as DTM sees it`,
  grpcMethodNotServed: (where: string, service: string, rpc: string, served: readonly string[]) =>
    `${where}: @GrpcMethod('${service}', '${rpc}') names no method the app's gRPC servers serve (they serve ${served.join(', ') || 'no service'}): Nest binds a @GrpcMethod only to an rpc of a service of the packages its gRPC options list, and answers every call of another UNIMPLEMENTED, which DTM retries forever; fix the service or rpc name to those of the .proto, or add the proto and its package to the gRPC microservice's options`,
  grpcServerTls: (where: string, url: string) =>
    `${where} is served by the app's gRPC server at ${url}, which has TLS credentials (ServerCredentials.createSsl), but DTM v1.19 dials gRPC branches without TLS: its calls would fail before reaching the handler, retried forever; serve DTM's branches from a gRPC server without TLS (no credentials option) on a network you trust, or set lynx.dtm.grpc_app_address to an address DTM reaches in plaintext that forwards to it`,
  grpcServerTlsAtStartup: (url: string) =>
    `the app's gRPC server at ${url} has TLS credentials (ServerCredentials.createSsl), but DTM v1.19 dials gRPC branches without TLS: it cannot call the @GrpcMethod branches this server serves (without grpc_app_address a gRPC transaction refuses them); serve them from a gRPC server without TLS on a network you trust, or set lynx.dtm.grpc_app_address to an address DTM reaches in plaintext that forwards to it`,
  grpcAppAddressOfOtherServer: (where: string, address: string, port: string, ports: readonly string[]) =>
    `${where} is served by the app's gRPC server on port ${port}, but lynx.dtm.grpc_app_address (${address}) is one address for the app's gRPC servers serving decorated branches on ports ${ports.join(', ')} and its port is none of theirs, so the module cannot tell where DTM reaches that server (at ${address} DTM's calls would be answered UNIMPLEMENTED, retried forever); give grpc_app_address the port of one of the app's gRPC servers as DTM reaches it (the others are then called at its host on their own ports), or serve the branches from one gRPC server`,
  grpcMethodOnStreamingRpc: (where: string, service: string, rpc: string) =>
    `${where}: @GrpcMethod('${service}', '${rpc}') names an rpc the .proto declares client-streaming (rpc ${rpc}(stream ...)), to which Nest binds no @GrpcMethod (its calls are answered UNIMPLEMENTED, which DTM retries forever), and DTM calls a branch with one unary call anyway; give the branch a unary rpc (rpc ${rpc}(Request) returns (Reply))`,
  grpcServiceAmbiguous: (where: string, service: string, count: number) =>
    `${where}: @GrpcMethod('${service}') ${count === 0 ? 'is in none of' : 'could be in several of'} the packages of the app's gRPC servers; give the service's full name, @GrpcMethod('package.${service}', ...)`,
  sagaWithoutCompensation: (decl: string, name: string) =>
    `${decl} has no @SagaCompensate('${name}'); add one, or state @SagaAction('${name}', { compensate: false })`,
  sagaCompensationStated: (decl: string, name: string) => `${decl} says { compensate: false }, but @SagaCompensate('${name}') exists; remove one of them`,
  compensationWithoutAction: (decl: string, name: string) => `${decl} compensates no @SagaAction('${name}'); add the action or fix the name`,
  tccIncomplete: (decl: string, missing: string[]) => `${decl} has no ${missing.join(' and no ')}; a TCC branch needs all three`,
  tccWithoutTry: (decl: string, name: string) => `${decl} belongs to no @TccTry('${name}'); add the Try or fix the name`,
  branchOtherPattern: (where: string) =>
    `${where} is decorated as a DTM branch and is also a @MessagePattern / @EventPattern of a microservice transport other than gRPC: DTM calls branches over HTTP and gRPC only, and the module cannot check a call that comes another way (its gid, op, token), so such a call would run the handler unchecked. Serve the branch from a handler of its own, and the message from another handler that calls the same service`,
  branchOtherTransport: (where: string, type: string) =>
    `${where} is a DTM branch and was called over ${JSON.stringify(type)}: DTM calls branches over HTTP and gRPC only, and the module checks only those calls, so this one is refused and its handler does not run`,
  branchNotRoute: (where: string) =>
    `${where} is decorated as a DTM branch but is neither a route nor a gRPC method; add @Post() (or @Get() for @MsgQueryPrepared), or @GrpcMethod()`,
  branchOnPatternOnly: (where: string) =>
    `${where} is decorated as a DTM branch but is a @MessagePattern / @EventPattern handler, neither a route nor a gRPC method: DTM calls branches over HTTP and gRPC only, and Nest routes a gRPC call (even on a Transport.GRPC server) only to @GrpcMethod('Service', 'Rpc') of the .proto's rpc, never to a pattern; replace the pattern with @GrpcMethod(), or add @Post() (or @Get() for @MsgQueryPrepared)`,
  branchOnGrpcStream: (where: string, decorator: string) =>
    `${where} is decorated as a DTM branch and is a streaming gRPC handler (${decorator}), but DTM calls a branch with one unary call (one request, one reply), which Nest never routes to a streaming handler; use @GrpcMethod() on a unary rpc (rpc M(Request) returns (Reply)), or an HTTP route`,
  branchPathParameters: (where: string, path: string) =>
    `${where} (${path}) has path parameters or wildcards: DTM calls one fixed URL per branch, so give it a plain path`,
  branchAnswersItself: (where: string) =>
    `${where} runs in a local transaction (a barrier, or an XA branch's db) and answers its calls itself (@Res() or @Next() without passthrough): the module answers some of its calls without running it (a repeated call, a compensation of an action that never ran, a back-check, an XA phase 2), to which Nest would then send no answer at all (DTM times the call out and retries it forever), and an answer it sends goes out before its transaction commits; use @Res({ passthrough: true }) and return the body`,
  branchHostBound: (where: string, hosts: string[], called: string | undefined) =>
    `${where} is in a controller bound to the host ${hosts.join(' or ')} (@Controller({ host })), but DTM calls it at ${called === undefined ? 'the address the app listens on (lynx.dtm.app_url is not set)' : `app_url's host ${called}`}: Nest would answer those calls 404 and DTM retry them forever; set lynx.dtm.app_url to a URL whose host the controller serves, or serve the branch from a controller without host`,
  sharedBranchRoute: (route: string, handlers: string[]) =>
    `${handlers.join(' and ')} serve the same route ${route}: Nest calls the first of them for every call, so DTM's calls of the others' branches would run it (or be refused by it, retried forever); give each branch route a path of its own`,
  branchWrongMethod: (where: string, kind: string, name: string, method: string, wanted: string) =>
    `${where} (${kind} '${name}') is a @${method.charAt(0)}${method.slice(1).toLowerCase()}() route, but DTM calls it with ${wanted}` +
    `${wanted === 'POST' ? ' (GET only when the payload is empty, which the module never sends; an XA branch always POST)' : ' (a back-check has no body)'}: every call would answer 404 and DTM would retry it forever. Use @${wanted === 'POST' ? 'Post' : 'Get'}() or @All()`,
  branchUndoAnswersItself: (where: string, op: string) =>
    `${where} undoes an action (op ${op}) and answers its calls itself (@Res() or @Next() without passthrough): the module answers its call without running it when the action was refused for its gid or branch id (there is nothing to undo), to which Nest would then send no answer at all (DTM times the call out and retries it forever, the transaction never finishing); use @Res({ passthrough: true }) and return the body`,
  branchFilterBeforeModule: (where: string, filter: string) =>
    `${where} has @UseFilters(${filter}) above its branch decorator: Nest tries that filter before the module's, and it catches what the module answers DTM with (a DtmFailureError, a DtmOngoingError, a pipe's 400), answering it itself: a 200 DTM records as the step's success (nothing rolled back), any other status an error DTM retries forever. Write it below the branch decorator, or on the controller: the module's filter then answers the branch's errors, as it does before the app's global filters`,
  probeRefusedBeforeHandler: (method: string, status: number, handler: string, message: string) =>
    `${method} is refused with ${status} before ${handler} (${message}): a global guard (APP_GUARD), a guard of the controller or a middleware of the app (app.use, MiddlewareConsumer: auth, CSRF, rate limits) refuses DTM's calls, which carry no credentials; let DTM's calls through (a guard: isDtmBranchHandler; a middleware: leave the branch routes out of it, exclude() / forRoutes())`,
  branchHttpCode: (where: string, code: number) =>
    `${where} answers its success with ${code} (@HttpCode(${code})), but DTM reads every status but 200 as an error and calls the branch again and again; remove that @HttpCode (the branch decorator answers 200)`,
  branchNotUriVersioned: (where: string, type: string, byDefault: boolean) =>
    `${where} is versioned by ${type}${byDefault ? ' (the defaultVersion of enableVersioning)' : ''}, which DTM cannot send per branch: Nest would answer its calls 404 and DTM retry them forever; use URI versioning or make the branch route version-neutral (@Version(VERSION_NEUTRAL) on it or its controller)`,
  helperBranchNotObject: (method: string, index: number, got: unknown) => `${method}: branch ${index} must be an object ({ action, data, ... }), got ${got === null ? 'null' : Array.isArray(got) ? 'an array' : typeof got}`,
  noBranches: (method: string) => `${method} needs at least one branch`,
  helperTccConfirmCancelMissing: (index: number, tryTarget: unknown, missing: string) =>
    `executeTcc: branch ${index} (try ${typeof tryTarget === 'string' ? JSON.stringify(redactUrl(tryTarget)) : String(tryTarget)}) has no ${missing}: give both confirm and cancel (strings; '' only when there is nothing to undo), or neither with try naming this app's TCC branch; else the Try's work would never be ${missing === 'confirm' ? 'confirmed' : missing === 'cancel' ? 'cancelled' : 'confirmed or cancelled'}. Nothing was sent`,
  // branches of other services, by name (lynx.dtm.services, contracts)
  remoteUnknownService: (service: string, branch: string, known: string[]) =>
    `branch ${JSON.stringify(branch)} names service ${JSON.stringify(service)}, which lynx.dtm.services does not configure (${known.length ? `it configures: ${known.join(', ')}` : 'it configures none'}); add lynx.dtm.services.${service}: { url: http://host:port } (or { grpc: host:port })`,
  remoteUnknownBranch: (service: string, branch: string, known: string[]) =>
    `service ${JSON.stringify(service)} has no branch ${JSON.stringify(branch)}; its branches: ${known.length ? known.slice(0, 20).join(', ') + (known.length > 20 ? ` and ${known.length - 20} more` : '') : 'none (it publishes no decorated branch)'}. Fix the name (or the contract both services import)`,
  remoteWrongKind: (service: string, branch: string, kind: string, wanted: string) =>
    `branch ${JSON.stringify(branch)} of service ${JSON.stringify(service)} is a ${kind} branch, not a ${wanted} branch; ${kind === 'saga' ? 'add it to a saga' : kind === 'tcc' ? 'call it with tcc.callBranch' : kind === 'msg' ? 'add it to a msg' : 'call it with xa.callBranch'}`,
  remoteWrongTransport: (service: string, branch: string) =>
    `branch ${JSON.stringify(branch)} of service ${JSON.stringify(service)} is served over gRPC only, and DTM calls the branches of an HTTP transaction over HTTP only: start the transaction with { protocol: 'grpc' } (DTM then calls HTTP and gRPC branches)`,
  remoteManifestMissingOp: (service: string, branch: string, op: string) =>
    `service ${JSON.stringify(service)} publishes branch ${JSON.stringify(branch)} without a target for op ${op}; check its decorators (each kind needs all of its handlers)`,
  remoteManifestNotPublished: (service: string, endpoint: string) =>
    `service ${JSON.stringify(service)} does not publish its branches at ${endpoint}: set lynx.dtm.publish_branches: true on it (gRPC-only service: also load DTM_BRANCHES_PROTO in its gRPC server), or check lynx.dtm.services.${service}`,
  remoteManifestBad: (service: string, endpoint: string, why: string) => `service ${JSON.stringify(service)} answered its manifest at ${endpoint} with something unusable (${why}); is it a nestjs-dtm app with publish_branches?`,
  remoteManifestUnreachable: (service: string, endpoint: string, why: string) =>
    `the branch manifest of service ${JSON.stringify(service)} could not be fetched from ${endpoint} (${why}) and none was fetched before; start the service, or fix lynx.dtm.services.${service}`,
  remoteManifestStale: (service: string, why: string) => `the branch manifest of service ${JSON.stringify(service)} could not be refetched (${why}); using the one fetched before`,
  remoteCheckDeferred: (service: string, why: string) =>
    `service ${JSON.stringify(service)} did not answer its branch manifest at start-up (${why}); its branches will be checked on first use`,
  remotePayloadRefused: (service: string, branch: string, where: string, problem: string) =>
    `the payload for branch ${JSON.stringify(branch)} of service ${JSON.stringify(service)} (${where}) does not pass the schema of its contract entry: ${problem}. Nothing was sent to DTM (the service would refuse it with FAILURE, or, a message branch, DTM would call it again forever); fix the payload`,
  remoteSchemaThrew: (error: string) => `the schema threw (${error}) instead of returning issues: a bug of the schema (a Standard Schema's validate returns { issues } for a payload it refuses)`,
  contractNotBranches: (got: string) => `DtmModule option contracts must list contracts made with defineBranches(service, {...}), got ${got}`,
  schemaNotChecked: (decorator: string, name: string) =>
    `${decorator}(${JSON.stringify(name)}) was given a schema, which would never be checked there: a FAILURE of a compensation, Confirm, Cancel or message branch is retried by DTM forever, so only @SagaAction, @TccTry and @XaBranch check one. Remove the schema, and check the payload where the transaction is started: a contract entry's schema (msgBranch(schema), ...) is checked there for an HTTP branch added by name`,
  schemaThrew: (decl: string, handler: string, error: string) =>
    `the schema of ${decl} threw on the payload of ${handler} (${error}) instead of returning issues: a bug of the schema (a Standard Schema's validate returns { issues } for a payload it refuses). Answered FAILURE, so DTM rolls the transaction back rather than retrying the call forever; fix the schema`,
  invalidPayload: (where: string, problem: string) => `invalid payload for ${where}: ${problem}`,
  answerRefusedAfterRun: (where: string, status: number, problem: string, byInterceptor: boolean) =>
    byInterceptor
      ? `the app refused the answer of ${where} after it ran: an interceptor answered ${status} (${truncate(problem)}) once its local transaction was done (committed, an XA branch prepared, or a call its barrier skipped); answered FAILURE, so DTM rolls the transaction back, undoing what it did`
      : `${where} ran and was answered ${status} (${truncate(problem)}): the handler's own refusal, or an interceptor of the app refusing its answer after it ran; answered FAILURE, so DTM rolls the transaction back`,
  emptyRequestRefused: (where: string, info: { gid: string; branchId: string; op: string; transType: string } | undefined, problem: string) =>
    `${where} answered 400 (${truncate(problem)}) to DTM's ${info?.op === 'msg' ? 'back-check' : 'XA phase 2'}${info ? ` (${info.transType} gid ${info.gid}, branch ${info.branchId}, op ${info.op})` : ''}, whose request DTM sends empty (HTTP: no body; gRPC: an empty message): a pipe (a global ValidationPipe with a DTO on @Body() / @Payload(), or a pipe of its own) refused it. Answered 500 (gRPC INTERNAL), which DTM retries, not FAILURE, which would ${info?.op === 'msg' ? 'fail a message whose local transaction may have committed' : 'be retried forever'}. Fix the handler: ${info?.op === 'msg' ? 'take no payload on it (read the call with @BranchContext()), or give it a barrier (@MsgQueryPrepared(name, { barrier }): the module then answers the back-check before pipes run)' : "validate the action's payload with the decorator's { schema } (checked on the action only) instead of a pipe, or give it a database (@XaBranch(name, { db }): the module then answers phase 2 before pipes run)"}`,
  emptyRequestAnswer: (where: string) => `${where} refused DTM's empty request with 400 (see the app's log); answered as an error DTM retries`,
  badWorkflowName: (got: unknown) => `@DtmWorkflow(name): a workflow name must be a string of 1 to 128 characters without control characters, got ${JSON.stringify(got) ?? typeof got}`,
  unknownWorkflowOptions: (name: string, keys: string[]) =>
    `@DtmWorkflow(${JSON.stringify(name)}) has no option ${keys.map((k) => JSON.stringify(k)).join(', ')}: it takes compensateFailedStep and transaction (the transaction options, e.g. { transaction: { retryInterval: 5 } })`,
  badBranchName: (decorator: string, got: string) =>
    `${decorator}(${JSON.stringify(got.length > 140 ? `${got.slice(0, 140)}…` : got)}): a branch name must be 1 to 128 characters without spaces, control characters or '/', so that add(name) can find it (a string with '/' is read as a URL or gRPC target)`,
  unknownBranchOptions: (decorator: string, name: string, keys: string[], takes: readonly string[]) =>
    `${decorator}(${JSON.stringify(name)}) has no option ${keys.map((k) => JSON.stringify(k)).join(', ')}: it takes ${takes.length > 1 ? `${takes.slice(0, -1).join(', ')} and ${takes[takes.length - 1]}` : takes[0]} (an option it does not take would be ignored: check the spelling)`,
  contractKindMismatch: (decorator: string, entryKind: string, branch: string, service: string, servedBy: string) =>
    `${decorator} was given the ${entryKind} branch ${JSON.stringify(branch)} of service ${JSON.stringify(service)}: a${/^[aeiouxX]/.test(entryKind) ? 'n' : ''} ${entryKind} branch is served by ${servedBy}; callers of the contract add it as a ${entryKind} branch, so decorate the handler with one of those (or change the contract's entry)`,
  decoratorName: (kind: string, got: string) => `a ${kind} branch decorator takes a branch name or a contract entry (defineBranches), got ${got}`,
  notStandardSchema: (branch: string) => `the schema of branch ${JSON.stringify(branch)} does not implement Standard Schema v1 (a '~standard' property with version 1 and validate()); use zod >= 3.24, valibot >= 1, arktype, or write one`,
  unknownBranch: (kind: string, name: string, known: string[], declared: readonly string[], otherKinds: readonly string[] = []) =>
    (declared.length
      ? `no ${kind} branch named "${name}" among the controllers of this app (known: ${known.length ? known.join(', ') : 'none'}): ${declared.join(', ')} ${declared.length > 1 ? 'are' : 'is'} decorated ${kind}('${name}'), but Nest never created ${[...new Set(declared.map((d) => d.slice(0, d.lastIndexOf('.'))))].join(' or ')} as a controller; list it in the controllers of a module the app imports (not in providers)`
      : `no ${kind} branch named "${name}" (known: ${known.length ? known.join(', ') : 'none'}); check the name, or decorate the handler`) +
    (otherKinds.length
      ? `. "${name}" is ${otherKinds.map((k) => `a ${k} branch of this app${BRANCH_USE[k] ? ` (for ${BRANCH_USE[k]})` : ''}`).join(' and ')}; ${BRANCH_USE[kind] ?? 'this call'} takes ${kind} branches only`
      : ''),
  noAppUrl: (name: string) =>
    `cannot build the URL of branch "${name}": lynx.dtm.app_url is not set and the app is not listening yet; set app_url, or start the transaction after app.listen()`,
  appAddressLoopback: (key: 'app_url' | 'grpc_app_address', host: string, dtmHost: string) =>
    `lynx.dtm.${key} names ${host}, this host's loopback, while DTM is at ${dtmHost} (lynx.dtm.server_url): DTM calling ${host} reaches its own host, not this app, so every branch call fails and is retried forever, unless DTM runs on this host under that name; set ${key} to this service's address as DTM sees it (its host name or IP; from a DTM container, host.docker.internal for an app on the Docker host)`,
  appAddressUnresolved: (key: 'app_url' | 'grpc_app_address', host: string, code: string) =>
    `lynx.dtm.${key} names ${host}, which does not resolve here (${code}): if DTM cannot resolve it either, every branch call DTM makes fails and is retried forever, with nothing in this app's log until a wait for a transaction ends; set ${key} to this service's address as DTM sees it (a typo in the host name?)`,
  appAddressUnspecified: (key: 'app_url' | 'grpc_app_address', host: string) =>
    `lynx.dtm.${key} names ${host}, an address a server listens on, not one DTM can call: DTM calling it reaches its own host, so only a DTM server on this host reaches this app's branches; set ${key} to this service's address as DTM sees it (its host name or IP)`,
  appUrlLoopbackOtherPort: (appUrl: string, port: number, listening: number) =>
    `lynx.dtm.app_url (${appUrl}) names this host's loopback at port ${port}, but the app listens on port ${listening}: DTM would call every branch where nothing of this app answers (connection refused, retried forever), unless a proxy on this host forwards that port to the app; set app_url's port to ${listening} (and its host to this service's address as DTM sees it, when DTM runs elsewhere)`,
  appUrlWithGlobalPrefix: (appUrl: string, prefix: string) =>
    `lynx.dtm.app_url (${appUrl}) ends with the app's global prefix ${prefix}, which the module adds to each branch route's path itself: DTM would call ${appUrl.replace(/\/+$/, '')}${prefix}/... and get 404, retried forever, unless what is in front of the app (a proxy, a parent app it is mounted in) strips one ${prefix}; set app_url to the app's base URL without the global prefix`,
  appUrlFromListen: (url: string) =>
    `lynx.dtm.app_url is not set: branch URLs use ${url}, the address this app listens on, which DTM can only reach when it runs on the same host; set app_url to this service's address as DTM sees it`,
  noRegistry: (name: string) =>
    `"${name}" is not a URL, and branch names need DtmModule's branch registry: use the DtmClient that DtmModule provides, or pass URLs`,
  nestedTccHeaders: () =>
    'tccFromBranch(branch, options) cannot set branchHeaders with lynx.dtm.branch_auth_keys: DTM sends the transaction\'s own headers to its sub-branches, so their calls carry those',
  nestedTccNotVerified: () =>
    'tccFromBranch() with lynx.dtm.branch_auth_keys needs the BranchInfo that @BranchContext() gave for the verified call being served (not a copy or one built by hand): its sub-branches must carry the headers that call\'s token signed',
  notInTccBranch: () => 'tccFromBranch() needs the @BranchContext() of a TCC branch call (a @TccTry handler)',
  abortFailed: (transType: string, gid: string, error: string, status: string | undefined) => {
    const message = transType === 'msg';
    if (status === 'failed') return `DTM refused the abort of ${transType} gid=${gid}: it holds it failed, rolled back already (${message ? 'the message is not delivered' : 'its branches cancelled or rolled back'}); the caller gets the body's error: ${truncate(error)}`;
    if (status === 'succeed' || status === 'submitted') {
      return message
        ? `DTM refused the abort of msg gid=${gid}: it holds it ${status}: DTM's back-check found the local transaction committed and it ${status === 'succeed' ? 'delivered' : 'is delivering'} the message, though the local transaction then threw (the caller gets that error). Make the back-check answer FAILURE until the local transaction commits (a @MsgQueryPrepared with { barrier } on the database of doAndSubmitDb does): ${truncate(error)}`
        : `DTM refused the abort of ${transType} gid=${gid}: it holds it ${status}: it ${transType === 'xa' ? 'commits' : 'confirms'} the branches, though the body threw (the caller gets that error): ${truncate(error)}`;
    }
    const then = message ? 'DTM asks the back-check at the message\'s timeout and delivers or fails the message as it answers' : 'DTM rolls the prepared transaction back at its timeout';
    return `abort of ${transType} gid=${gid} failed after its body threw (the caller gets the body's error; ${status === undefined ? `unless an abort got through, ${then}` : `DTM holds it ${status}: ${then}`}): ${truncate(error)}`;
  },
  nestedTccFailureSwallowed: (handler: string, gid: string, branchId: string, op: string, cause: string) =>
    `${handler}, the Try of tcc ${gid}, went on after the ${op === 'register' ? 'registration' : 'Try'} of its sub-branch ${branchId} failed (${truncate(cause)}) and answered success: DTM holds the sub-branch, and that success would have DTM confirm it, work whose Try failed or may not have run. The Try is answered FAILURE instead (DTM cancels the transaction's branches, the sub-branch's too): let the error of the nested callBranch() end the Try, never catch it and carry on`,
  nestedSubBranchTaken: (gid: string, branchId: string, cause: string) =>
    `DTM already holds sub-branch ${branchId} of tcc ${gid} and refused to register it again (${truncate(cause)}): this Try registered it before, in an earlier call of the same Try (its caller called it again with the same branch id: a retry after a lost answer) or through another nested TCC made on a copy of its BranchInfo (each copy numbers its sub-branches from the first id again). A Try that nests a TCC must run once per branch: put it behind the barrier (@TccTry(name, { barrier }): a second call is answered success without running it), and give every tccFromBranch() the BranchInfo of @BranchContext() itself, never a copy. A FAILURE: a Try that lets it out is answered FAILURE, and its transaction rolls back`,
  nestedTccGrpcUnreachable: (gid: string, grpcServer: string, isDefault: boolean, cause: string) =>
    `this nested TCC was called over HTTP, but DTM holds tcc ${gid} as gRPC and its sub-branch can be called over gRPC only, so it registers the sub-branch with DTM over gRPC, at lynx.dtm.grpc_server (${grpcServer}${isDefault ? ', the default: this app does not set it' : ''}), which did not answer: set grpc_server to the DTM server's gRPC address (port 36790 by default) in this app too, though it serves HTTP only. ${cause}`,
  nestedTccNotInTry: (op: string) =>
    `tccFromBranch() was given the @BranchContext() of a TCC call with op ${shownCallerValue(op)}: sub-branches are registered and tried in a Try (op try) only, while DTM holds the transaction prepared; DTM confirms or cancels them itself, with their parent. Call it in the @TccTry handler`,
  notInXaBranch: () => 'xaLocalTransaction(branch, db, business) needs the @BranchContext() of an XA branch call (an @XaBranch handler) as branch',
  xaDbMissing: (got: unknown) =>
    `xaLocalTransaction(branch, db, business): db must be an XA database (mysqlXaDatabase(() => mysql.createConnection(...)), pgXaDatabase(...)), got ${got === null ? 'null' : typeof got === 'object' ? 'an object without connect() and dialect mysql / postgres' : typeof got}`,
  badBarrierTable: (table: string) =>
    `barrier table ${JSON.stringify(table)} must be name or schema.name (letters, digits, _; each part at most 63 characters), e.g. dtm_barrier.barrier`,
  barrierKeysNotBinary: (table: string, columns: readonly string[], alter: string) =>
    `barrier table ${table} keeps ${columns.join(', ')} in character columns, whose collation makes ids that differ in case, accents or trailing spaces one key (the second branch would be skipped as a duplicate); make them binary, once, with: ${alter} (see sql/barrier.mysql.binary-keys.sql)`,
  outboxCommitAnswerLost: (gid: string, cause: string) =>
    `the local transaction of msg ${gid} failed (${truncate(cause)}), but its back-check found its barrier row: the database committed it and the answer to its COMMIT was lost (a connection cut while it ran), so the message was submitted and DTM delivers it. Do not run the local transaction again; wait for it with waitForFinal("${gid}")`,
  outboxRolledBack: (gid: string) =>
    `msg ${gid}: the outbox's local transaction was rolled back before its commit (its barrier row is gone): on MySQL / MariaDB a deadlock rolls the whole transaction back, and a business that catches it and goes on runs the rest on its own, each statement committed at once. The message is not sent (DTM fails it); rethrow a deadlock (or any SQL error) from the business instead of going on, and check what the statements after it committed`,
  barrierTxIsPool: (adapter: string, pass: string) =>
    `${adapter}(...) was given a pool, not the connection of your open transaction: each barrier statement would run on a pooled connection of its own and commit at once, so the barrier row would not roll back with your business (a message delivered, or a branch later skipped as a duplicate, for a business that rolled back); nothing was written. Pass ${pass}, or let the barrier open the transaction: callWithDb(db, business) / doAndSubmitDb`,
  barrierTxNotOpen: (adapter: string, open: string) =>
    `${adapter}(...): the client has no transaction open, so the barrier row would commit at once, whether your business commits or not (a message delivered, or a branch later skipped as a duplicate, for a business that rolled back); nothing was written. ${open} before barrier.call(...), or let the barrier open the transaction: callWithDb(db, business) / doAndSubmitDb`,
  barrierTxAutocommitted: (gid: string, branchId: string, op: string) =>
    `barrier.call(...) for gid ${gid} branch ${branchId} op ${op}: the connection has no transaction open (a mysql2 connection: beginTransaction() not called, or its transaction already ended), so the barrier row committed at once, whether your business commits or not (a message delivered, or a branch later skipped as a duplicate, for a business that rolled back). The row was deleted again and the business not run. Call await conn.beginTransaction() before barrier.call(...), or let the barrier open the transaction: callWithDb(db, business) / doAndSubmitDb`,
  typeormNoTransaction: () =>
    'the TypeORM EntityManager has no query runner: pass the manager of dataSource.transaction(...), or a QueryRunner after startTransaction()',
  typeormNoPreparedStatements: () =>
    "TypeORM's MySQL / MariaDB connection has no prepared statements (execute), which the barrier needs so that the server binds its values: use the mysql2 driver (TypeORM 0.3: connectorPackage: 'mysql2')",
  typeormUnsupported: (type: string) => `TypeORM "${type}" has no barrier dialect: the barrier supports postgres, mysql and mariadb`,
  msgRolledBack: (gid: string) =>
    `the local transaction of message ${gid} did not commit (the back-check recorded a rollback): DTM fails the message`,
  redisInsufficient: (key: string, amount: number) => `redis key ${key} is missing, or adding ${amount} would make it negative`,
  redisAmountNotInteger: (key: string, amount: unknown) =>
    `redisCheckAdjustAmount(redis, '${key}', ${typeof amount === 'number' ? amount : JSON.stringify(amount) ?? String(amount)}): the amount must be a safe integer (Number.isSafeInteger), as Redis's INCRBY and DTM's SDKs (amount int) add whole numbers only; nothing was written. Keep amounts in whole units, e.g. cents (10.50 → 1050)`,
  barrierBehindBarrier: (method: string, gid: string, branchId: string, op: string) =>
    `DtmClient.barrier(branch).${method}() for gid ${gid}, branch ${branchId}, op ${op}: this handler already runs behind the barrier (@UseBarrier on its controller, or { barrier } on its decorator), whose local transaction holds this call's barrier row; a second SQL barrier for the same call would skip the business as its own duplicate, or wait for that row until the lock timeout. Nothing was written. Do the work on the @BarrierTx() handle (the module's barrier already guards it), or opt the handler out with { barrier: false } on its decorator and guard it with DtmClient.barrier() yourself`,
  redisBadExpiry: (method: string, expireSeconds: unknown) =>
    `${method}: expireSeconds must be a positive whole number of seconds (how long the barrier keys are kept; default 7 days), got ${typeof expireSeconds === 'number' ? expireSeconds : JSON.stringify(expireSeconds) ?? String(expireSeconds)}; nothing was written. Redis keys cannot be kept for ever this way (0 is not "never"): keep them longer than DTM may retry the call`,
  redisBalanceNotInteger: (key: string, stored: string) =>
    `redis key ${key} holds ${JSON.stringify(stored)}, not an integer INCRBY can add to (written by INCRBYFLOAT, or as a decimal?): the barrier wrote nothing and the branch answers an error, which DTM retries; store whole units there, e.g. cents (SET ${key} 1050), and the retry applies it`,
  redisCrossSlot: (key: string, gid: string) => {
    const tag = /\{([^}]+)\}/.exec(key)?.[1] ?? key;
    return `redis answered CROSSSLOT: on Redis Cluster the barrier's script needs the amount key ${key} and the call's barrier keys (${gid}-<branch id>-<op>-<barrier id>) in one hash slot, and they are in others; nothing was written and the branch answers an error, which DTM retries for ever. Use a single Redis (or a primary with replicas) for barriers, or give the transaction's gid the amount key's hash tag (amount key {${tag}}..., gid {${tag}}-...)`;
  },
  redisNotApplied: (key: string, amount: number, reason: string) =>
    `redis refused to add ${amount} to key ${key} (${reason}): the barrier wrote nothing and the branch answers an error, which DTM retries`,
  duplicated: (gid: string) =>
    `message ${gid}: the barrier row of its local transaction already exists: DTM's back-check ran first and rolled the message back, so the business did not run and nothing is sent`,
  unknownBarrier: (where: string, name: string, known: string[]) =>
    `${where} uses barrier connection "${name}", which the module does not have (known: ${known.length ? known.join(', ') : 'none'}); register it in DtmModule.forRoot({ barrierConnections: { ${name}: ... } })`,
  barrierOnXa: (where: string) => `${where}: XA branches do not take a barrier connection; they run their own local XA transaction`,
  notInBranchCall: (where: string) =>
    `${where} runs in a local transaction (barrier or XA database), which the module opens only for a branch call DTM makes through its route (or gRPC method), and this call did not come that way (a direct call, from a unit test say). Call it as DTM does (callBranch() of nestjs-dtm/testing on the running app), or unit-test the business logic in a service that takes the transaction`,
  dtmModuleSetUpTwice: (count: number, importers: string[]) =>
    `DtmModule is set up ${count} times in this app (DtmModule.forRoot / forRootAsync imported by ${importers.join(', ')}): each would serve every decorated branch of the app with its own options (barrier connections, keys, hooks), and on Fastify only one can install its body parser. Set it up once: in the root module with isGlobal: true, or in one module that imports it and exports it (exports: [DtmModule]), imported where it is needed`,
  noBranchRuntime: (where: string) =>
    `${where} runs in a local transaction (barrier or XA database), but no DtmModule serves it: import DtmModule in its module, or make it global (isGlobal: true)`,
  noBranchRuntimeAuth: (where: string) =>
    `${where}: lynx.dtm.branch_auth_keys is set, but no DtmModule serves this controller, so its calls would run unauthenticated: import DtmModule in its module, or make it global (isGlobal: true)`,
  redisBarrierOnHandler: (where: string, name: string) =>
    `${where}: barrier connection "${name}" is Redis, which cannot wrap a handler in a transaction; use BranchBarrier.redisCheckAdjustAmount() in the handler`,
  noBarrierTx: (where: string) =>
    `${where} asks for @BarrierTx(), but runs without a barrier or XA database: give its decorator { barrier: '<connection>' } (its controller @UseBarrier()), or @XaBranch(name, { db })`,
  branchBarrierTxWithoutTransaction: (where: string) =>
    `${where} asks for @BarrierTx(), but runs without a barrier or XA database, so every call DTM makes would answer 500 and be retried forever: give its decorator { barrier: '<connection>' } (its controller @UseBarrier()), use @XaBranch(name, { db }), or drop the @BarrierTx() parameter`,
  xidTooLong: (xid: string, bytes: number, dialect: string, max: number) =>
    `XA id "${xid}" (<gid>-<branch_id>) is ${bytes} bytes, over ${dialect === 'mysql' ? "MySQL's" : "PostgreSQL's"} limit of ${max}: use a shorter gid (DTM's newGid gives 22 characters)`,
  xaPhase2Unknown: (op: 'commit' | 'rollback', gid: string, branchId: string, xid: string, reason: string | undefined) =>
    op === 'commit'
      ? `XA commit of gid ${gid}, branch ${branchId}: the database has no prepared XA transaction ${xid}, and ${reason === 'rollback' ? 'its barrier row says it was rolled back' : 'no barrier row says it committed'}: its work was rolled back or lost outside DTM, so it cannot be committed, and it is not reported as committed. DTM retries the call; check the database (XA RECOVER, pg_prepared_xacts) and settle the transaction by hand`
      : `XA rollback of gid ${gid}, branch ${branchId}: the database has no prepared XA transaction ${xid}, and its barrier row says it committed (outside DTM's decision), which cannot be undone here. DTM retries the call; check the database and settle the transaction by hand`,
  xaPhase2Attached: (op: 'commit' | 'rollback', gid: string, branchId: string, xid: string, waitedMs: number) =>
    `XA ${op} of gid ${gid}, branch ${branchId}: the XA transaction ${xid} is still held by the connection that runs or prepared it after ${waitedMs} ms (MySQL / MariaDB let no other connection finish it before that one closes). DTM retries the call; if this repeats, that connection is not being closed, or the branch's action still runs (an XA database's connect() must make a new connection each call, and nothing else may keep it open), or the connection was cut after its prepare without the server noticing: the server keeps such a session, with the branch's row locks, until its wait_timeout (8 hours by default) or TCP keepalive ends it (docs/xa.md says how to shorten that); or an earlier phase 2 of this branch was acknowledged by the database without being applied (logged then: "... acknowledged ... but did not apply it"), which only a restart of the database server undoes`,
  xaPhase2Unapplied: (op: 'commit' | 'rollback', gid: string, branchId: string, xid: string) =>
    `XA ${op} of gid ${gid}, branch ${branchId}: the database acknowledged XA ${op.toUpperCase()} '${xid}' but did not apply it: the branch's XA transaction is still prepared and holds its row locks (MariaDB does this to a phase 2 that arrives while it is still detaching the transaction from the connection that prepared it, which has just closed; the id is then gone from XA RECOVER while the transaction stays). It is not reported as ${op === 'commit' ? 'committed' : 'rolled back'}. The server lists the transaction in XA RECOVER again once it restarts: restart the database server, and DTM's next retry of this call finishes the branch (until then each retry fails, and work on the branch's rows waits for their locks)`,
  xaPhase2Running: (gid: string, branchId: string, xid: string, waitedMs: number) =>
    `XA rollback of gid ${gid}, branch ${branchId}: the branch's action still runs after ${waitedMs} ms (its transaction holds the branch's barrier row and is not prepared as ${xid} yet), so there is nothing to roll back yet. DTM retries the call, which rolls the branch back once its action has prepared (or finds nothing once it failed); if this repeats, the action is stuck: look for its session in pg_stat_activity (idle in transaction, or waiting for a lock)`,
  xaNotPrepared: (gid: string, branchId: string, xid: string) =>
    `XA branch of gid ${gid}, branch ${branchId}: PostgreSQL prepared nothing (PREPARE TRANSACTION '${xid}' answered ROLLBACK), because its transaction had already failed: a statement of the branch's code (the @XaBranch handler, or the workflow's xa step) failed and the code caught the error and went on (e.g. a unique violation or a timeout swallowed with .catch()), or the code ended the transaction itself with ROLLBACK. Its work is rolled back, so the branch answers FAILURE and the transaction rolls back. Fix the code: rethrow the SQL error (a DtmFailureError to refuse the branch), or run a statement that may fail inside SAVEPOINT ... / ROLLBACK TO SAVEPOINT`,
  xaCommittedByBranch: (gid: string, branchId: string, xid: string, table: string) =>
    `XA branch of gid ${gid}, branch ${branchId}: the branch's code committed its transaction itself (a COMMIT on the connection the @XaBranch handler or the workflow's xa step gets, e.g. a helper running its own BEGIN / COMMIT), so PREPARE TRANSACTION '${xid}' prepared nothing: the branch's work and its barrier row are committed outside the XA transaction, where DTM can neither commit nor roll them back. The branch answers FAILURE and the transaction rolls back; DTM's rollback of this branch fails (its barrier row says it committed) and is retried until you settle it by hand: undo the branch's work and delete its barrier row (gid '${gid}', branch_id '${branchId}', op 'action' in ${table}) in one transaction, and DTM's next rollback finishes. Fix the code: never run COMMIT, ROLLBACK or BEGIN on an XA branch's connection; the module prepares it and DTM commits or rolls it back`,
  mysqlBarrierDatabaseNotPool: () =>
    `mysqlBarrierDatabase() takes a mysql2/promise pool, got a connection (no getConnection()): the module takes a connection of its own from the pool for each branch call and begins its transaction there, so every barrier call would fail. Pass mysql.createPool({ ... }) (from 'mysql2/promise'); to put the barrier into a transaction you opened yourself, use mysqlBarrierTransaction(conn)`,
  mysqlCallbackApi: (adapter: string, what: string, fix: string) =>
    `${adapter}() was given a callback-API mysql2 ${what} ('mysql2', not 'mysql2/promise'; e.g. the raw connection of TypeORM's or Knex's MySQL driver), whose statements answer through a callback: the barrier could not read their answers, so every call would fail, and a barrier row could be written without its business. Pass ${fix} (the promise API of the same ${what}), or create it from 'mysql2/promise'${what === 'connection' ? '; with TypeORM, use typeormBarrierTransaction(manager, dialect)' : ''}`,
  pgBarrierDatabaseClient: () =>
    `pgBarrierDatabase() takes a pg.Pool, got a pg client (a pg.Client, or a client a pool lent): the module takes a connection of its own from the pool for each branch call, and a client cannot be connected twice, so every barrier call would fail ("Client has already been connected"). Pass new pg.Pool({ ... }); to put the barrier into a transaction you opened yourself, use pgBarrierTransaction(client)`,
  pgTransactionEndedByBusiness: () =>
    "the barrier's local transaction on PostgreSQL was no longer open when the handler's business returned: the code ended it itself, on the client the barrier gave (a COMMIT or ROLLBACK, e.g. a helper running its own BEGIN / COMMIT). With ROLLBACK nothing of the call is kept; with COMMIT, its work and barrier rows are committed (outside the barrier's transaction: anything the business ran after the COMMIT committed statement by statement), and DTM's retry of the call is skipped as a duplicate. The call answers an error either way, and DTM retries it. Fix the code: never run BEGIN, COMMIT or ROLLBACK on the barrier's client; the barrier commits when the business returns and rolls back when it throws",
  pgTransactionNotCommitted: (status: string) =>
    `the barrier's local transaction on PostgreSQL was not committed (${status}): a statement of the handler's business failed and the code caught the error and went on (e.g. a unique violation or a timeout swallowed with .catch()), which aborts a PostgreSQL transaction (its COMMIT then rolls it back without an error). Nothing of the call is kept (neither its work nor its barrier rows), so it answers an error and DTM retries it. Fix the code: rethrow the SQL error (a DtmFailureError to refuse the branch), or run a statement that may fail inside SAVEPOINT ... / ROLLBACK TO SAVEPOINT`,
  xaBadOp: (op: string) => `an XA branch serves op=action, commit and rollback; got op=${shownCallerValue(op)}`,
  xaNoPhase2Url: () => 'an XA action call needs phase2_url in its query (the AP sends it: DtmClient.xaGlobalTransaction, or DTM SDKs)',
  xaActionWithoutPhase2Url: (where: string) =>
    `${where} refused an XA action call without phase2_url (dtm-phase2_url over gRPC), where its branch registers its commit and rollback: the app that calls the branch sends it (DtmClient.xaGlobalTransaction, DTM's SDKs); the handler did not run`,
  xaPreparedTransactionsDisabled: (name: string) =>
    `XA database "${name}" (PostgreSQL) has max_prepared_transactions = 0, PostgreSQL's default (the postgres Docker image's too): PREPARE TRANSACTION fails there ("prepared transactions are disabled"), so every XA branch on it would fail and its transaction roll back. Set max_prepared_transactions above the number of XA branches that may be prepared at once (postgresql.conf, or docker run ... postgres:16 -c max_prepared_transactions=100) and restart PostgreSQL`,
  pingStoreFailed: (serverUrl: string, reason: string) =>
    `DTM at ${serverUrl} answers its ping, but could not read its store (a query of a transaction failed: ${reason}): until its store (its database or Redis) answers again, DTM can neither keep nor report a transaction. Check DTM's store and DTM's log`,
  startupPingAnswered: (version: string, protocol: string, latencyMs: number) => `DTM ${version} answers on ${protocol} (${latencyMs} ms)`,
  startupPingRetrying: (attempt: number, attempts: number, delaySeconds: number, reason: string) =>
    `DTM did not answer the start-up ping (attempt ${attempt} of ${attempts}), retrying in ${delaySeconds} s: ${reason}`,
  startupPingFailed: (attempts: number, reason: string) =>
    `DTM did not answer the start-up ping (lynx.dtm.startup_ping) after ${attempts} attempt${attempts > 1 ? 's' : ''}: ${reason}`,
  startupPingClosed: (attempt: number, attempts: number, reason: string | undefined) =>
    `the app closed during the start-up ping (lynx.dtm.startup_ping), at attempt ${attempt} of ${attempts}: ${reason === undefined ? 'no attempt was made' : `DTM did not answer (${reason})`}; no further attempt is made`,
  startupDatabaseNoAnswer: (timeoutSeconds: number) =>
    `no answer within ${timeoutSeconds} s (lynx.dtm.timeout): the database (or a proxy in front of it) accepted the connection and did not answer; the start-up went on without the check (the database's driver keeps waiting: give it a connection timeout, e.g. pg's connectionTimeoutMillis)`,
  barrierTableNotCreated: (table: string, place: string, reason: string) => `could not create the barrier table ${table} on ${place} (lynx.dtm.create_barrier_table): ${truncate(reason)}`,
  barrierTableUnchecked: (table: string, place: string, user: 'branch' | 'xa', reason: string) =>
    `could not check the barrier table ${table} on ${place}${user === 'xa' ? ' (every XA branch writes its barrier row there)' : ''}: ${truncate(reason)}`,
  barrierKeysUnchecked: (table: string, place: string, reason: string) => `could not check the key columns of the barrier table ${table} on ${place}: ${truncate(reason)}`,
  barrierTableMissing: (table: string, place: string, dialect: string, user: 'branch' | 'xa') =>
    `the barrier table ${table} does not exist on ${place} (${dialect}): ` +
    (user === 'xa'
      ? 'every XA branch writes its barrier row there inside its XA transaction, so every XA branch on it would fail and its transaction roll back. Create it before the app serves XA branches: '
      : 'every branch call with its barrier would fail (500) and DTM would retry it forever. Create it before the app serves branches: ') +
    `await ensureBarrierSchema(db, { table: '${table}' })${user === 'xa' ? ' with a barrier database on that database' : ''}, or run the module's sql/barrier.${dialect}.sql${user === 'xa' ? ' there' : ''}, or set lynx.dtm.create_barrier_table: true`,
  barrierTableNotWritable: (table: string, place: string, dialect: string, user: 'branch' | 'xa', reason: string) =>
    `the barrier table ${table} on ${place} (${dialect}) refuses the barrier's insert, for want of a permission (${truncate(reason)}): ` +
    (user === 'xa'
      ? 'every XA branch writes its barrier row there inside its XA transaction, so every XA branch on it would fail and its transaction roll back. '
      : 'every branch call with its barrier would fail (500) and DTM would retry it forever. ') +
    `Grant the database user the app connects as: GRANT SELECT, INSERT ON ${table} TO <user>` +
    (dialect === 'postgres' && table.includes('.') ? ` (and GRANT USAGE ON SCHEMA ${table.split('.')[0]} TO <user>)` : ''),
  barrierStatementRefused: (table: string, dialect: string, refusal: 'permission' | 'read-only' | 'no-table', reason: string, step: 'call' | 'xa-action' | 'xa-phase2' = 'call') =>
    `the database refused the barrier's statement on its table ${table} (${dialect}: ${truncate(reason)}), ` +
    (step === 'xa-action'
      ? 'so the XA branch\'s business did not run and the call fails: the app running the XA transaction aborts it; '
      : step === 'xa-phase2'
        ? 'so the XA branch\'s rollback could not record itself and the call answers an error DTM retries; '
        : 'so the business did not run and the call answers an error DTM retries; ') +
    (refusal === 'permission'
      ? `the database user the barrier connects as lacks a privilege: GRANT SELECT, INSERT ON ${table} TO <user>${dialect === 'postgres' && table.includes('.') ? ` (and GRANT USAGE ON SCHEMA ${table.split('.')[0]} TO <user>)` : ''}`
      : refusal === 'read-only'
        ? 'the database is read-only (a replica, or a read-only session or user): point the barrier connection at a primary that takes writes'
        : `the barrier table does not exist there: create it with ensureBarrierSchema(db, { table: '${table}' }), or the module's sql/barrier.${dialect}.sql, or set lynx.dtm.create_barrier_table: true`),
  barrierTableReadOnly: (table: string, place: string, dialect: string, reason: string) =>
    `the barrier table ${table} on ${place} (${dialect}) refuses the barrier's insert: the database is read-only (${truncate(reason)}); ` +
    'every branch call with its barrier fails (500, DTM retries it) until it takes writes. Point the connection at a primary that takes writes (not a replica, nor a read-only session or user: default_transaction_read_only, read_only)',
  mysqlXaPooledConnection: () =>
    "mysqlXaDatabase()'s connect() returned a pool's connection (pool.getConnection()); make a new one each call instead: mysqlXaDatabase(() => mysql.createConnection(options)). An XA branch's transaction stays prepared on the connection that ran it until that connection closes: a pool's connection would go back to the pool with it (its end() releases it), the next work given that connection would fail with XAER_RMFAIL, and DTM's commit or rollback could not reach the branch",
  pgXaPooledClient: () =>
    "pgXaDatabase()'s connect() returned a pool's client (pool.connect()); pass the pool itself instead, pgXaDatabase(pool), which gives each client back once the branch left nothing open on it, or make a new client each call: pgXaDatabase(async () => { const c = new pg.Client(config); await c.connect(); return c; }). A client connect() returns is ended when the branch is done: a pool's client ended so is never given back, its slot stays taken, and once the pool's slots are used up every connect() (the next branch's, DTM's commit or rollback, the app's other work on that pool) waits for one",
  pgXaSourceInvalid: () =>
    'pgXaDatabase(source): source must be a pg Pool (pgXaDatabase(pool): its connect() lends clients with release()) or a function making a new connected client each call (pgXaDatabase(async () => { const c = new pg.Client(config); await c.connect(); return c; })); a pg.Client itself is neither: one client cannot serve branches that run at once',
  xaDatabaseUnchecked: (name: string, dialect: string, table: string, reason: string) =>
    dialect === 'postgres'
      ? `could not check max_prepared_transactions of XA database "${name}" (PostgreSQL; XA needs it above 0), nor its barrier table ${table}: ${truncate(reason)}`
      : `could not check the barrier table ${table} on XA database "${name}" (every XA branch writes its barrier row there): ${truncate(reason)}`,
  xaPreparedTransactionsUnchecked: (name: string, reason: string) =>
    `could not check max_prepared_transactions of XA database "${name}" (PostgreSQL; XA needs it above 0): ${truncate(reason)}`,
  unknownXaDb: (where: string, name: string, known: string[]) =>
    `${where} uses XA database "${name}", which the module does not have (known: ${known.length ? known.join(', ') : 'none'}); register it in DtmModule.forRoot({ xaConnections: { ${name}: ... } })`,
  // workflows
  workflowDiverged: (workflow: string, gid: string, branchId: string, op: string, recorded: string, current: string, endsIn?: 'commit' | 'rollback') =>
    `workflow "${workflow}" (gid ${gid}) diverged from what it recorded: position ${branchId} (${op}) holds ${
      endsIn
        ? `the ${op} callback of step "${recorded}", recorded by an execution that ${op === 'commit' ? 'committed' : 'rolled back'}; the code now ${endsIn === 'commit' ? 'commits' : 'rolls back'}`
        : `step "${recorded}", ${current === '' ? 'the code now ends before it' : `the code now has "${current}" there`}`
    }; nothing was applied. A running workflow's steps must not change: deploy changed code under a new workflow name (e.g. "${workflow}.v2") and keep this one until its gids are final`,
  workflowPending: (workflow: string, gid: string, why: string) =>
    `workflow ${quotedCallerValue(workflow)} (gid ${gid}) is not finished (${truncate(why)}); DTM will call the app back to resume it: await it again with executeWorkflow(), or query the gid later`,
  workflowStepName: (workflow: string) => `workflow "${workflow}": a step needs a non-empty name (it is recorded, and checked on replay)`,
  workflowTooManySteps: (workflow: string, step: string, max: number) =>
    `workflow "${workflow}": step "${step}" would be its ${max + 1}th; a workflow takes at most ${max} steps (DTM's branch ids 01 to ${max}; wf.now(), wf.uuid() and wf.random() are steps too), so this one can never finish: do fewer steps (one step for many items), and forceStop this gid, undoing what its steps did`,
  workflowStepInPhase2: (workflow: string, step: string, owner: string, op: 'commit' | 'rollback') =>
    `workflow "${workflow}": step "${step}" started in the ${op} callback of step "${owner}"; a callback records no steps of its own (its record would lie past the workflow's last step, where every resume would take it for changed code): call branches through the handle the callback gets (b.http, b.grpc, b.barrier)`,
  workflowStepNotAwaited: (workflow: string, step: string, branchId: string) =>
    `workflow "${workflow}": step "${step}" (branch ${branchId}) was never awaited, or still ran, when the workflow function ended: its outcome (a FAILURE, say) could not change the workflow's, so the workflow is neither committed nor rolled back; await each step (a forgotten await), then DTM's next resume ends it`,
  workflowStepsConcurrent: (workflow: string, running: string, step: string) =>
    `workflow "${workflow}": step "${step}" started while step "${running}" runs; a workflow's steps run one after the other (await each)`,
  workflowCallbackAfterAction: (step: string, op: string) =>
    `step "${step}": register its ${op === 'rollback' ? 'onRollback' : 'onCommit'} before its action (a crash in between would lose it)`,
  workflowSecondCallback: (step: string, op: string) =>
    `step "${step}" already has its ${op === 'rollback' ? 'onRollback' : 'onCommit'}; a step has at most one of each (do both things in one callback, or use another step)`,
  workflowXaStepCallbacks: (step: string) =>
    `XA step "${step}" has an onRollback or onCommit: its phase 2 is the XA commit or rollback; put the callback on a step of its own`,
  workflowRecordRefused: (branchId: string, op: string, reason: string) =>
    `DTM refused to record step ${branchId}'s ${op} (${truncate(reason)}): the workflow is no longer prepared (another execution of it ended it, or it was stopped); this execution stops, nothing is rolled back for it`,
  workflowNameNotGrpc: (name: string) =>
    `workflow ${JSON.stringify(name)} cannot run over gRPC: DTM resumes it with its name in gRPC metadata, which takes printable ASCII without spaces around it; rename the workflow, or run it over HTTP ({ protocol: 'http' })`,
  workflowSecondAction: (step: string) => `step "${step}" already has its action; a step has exactly one (start another step)`,
  workflowUnknownDatabase: (workflow: string, option: string, name: string, known: string[]) =>
    `workflow "${workflow}" names database "${name}", which the module's ${option} do not have (known: ${known.length ? known.join(', ') : 'none'})`,
  workflowRedisBarrier: (workflow: string, name: string) =>
    `workflow "${workflow}": barrier connection "${name}" is Redis, which holds no local transaction for a step; give run() a PostgreSQL or MySQL barrier database (one of the module's barrierConnections, or pgBarrierDatabase() / mysqlBarrierDatabase())`,
  workflowXaNotResumable: (step: string) =>
    `XA step "${step}" prepared in an earlier execution that stopped before recording it: its outcome cannot be resumed, so the workflow rolls back`,
  workflowPhase2Failure: (workflow: string, gid: string, step: string, op: string, reason: string) =>
    `workflow "${workflow}" (gid ${gid}): the ${op} callback of step "${step}" threw DtmFailureError (${truncate(reason)}), which a ${op} cannot answer; it is retried when DTM resumes the workflow`,
  workflowInputTooLong: (workflow: string, length: number, max: number) =>
    `workflow "${workflow}": its input takes ${length} characters as DTM stores it (base64, with the name), over the ${max} of DTM's SQL stores; pass less (an id to look up)`,
  workflowResultTooLong: (workflow: string, length: number, max: number) =>
    `workflow "${workflow}": its result takes ${length} characters as DTM stores it (base64), over the ${max} of DTM's SQL stores; return less (an id to look up). It is left pending, nothing committed (no onCommit ran): DTM resumes it, and code returning less finishes it`,
  workflowStepValueTooLarge: (workflow: string, step: string, branchId: string, bytes: number, max: number) =>
    `workflow "${workflow}": step "${step}" (${branchId}) returned a value recorded in ${bytes} bytes, over the ${max} DTM's MySQL store keeps of a step (the module records no more on any store). The workflow is left pending with the value unrecorded: its work ran, and DTM's resume runs the step again (its work again, unless a barrier or its own check stops it) and stops here again; return less from the step (an id to look up, not the data) and the next resume finishes it, or forceStop the gid`,
  workflowStepTooLarge: (branchId: string, bytes: number, max: number) => `step ${branchId}'s value is ${bytes} bytes recorded, over the ${max} of DTM's MySQL store; return less from the step`,
  badHook: (name: string, events: readonly string[], what: string) =>
    `instrumentation.hooks.${name}: ${what}; the events are ${events.join(', ')}, each with a function (event) => void`,
  noWorkflows: () => 'workflows need DtmModule (it finds the @DtmWorkflow methods): use the DtmClient that DtmModule provides',
  unknownWorkflow: (name: string, known: string[], declared: readonly string[]) =>
    declared.length
      ? `no @DtmWorkflow named "${name}" among the providers of this app (known: ${known.length ? known.join(', ') : 'none'}): ${declared.join(', ')} ${declared.length > 1 ? 'are' : 'is'} decorated @DtmWorkflow('${name}'), but Nest never created ${[...new Set(declared.map((d) => d.slice(0, d.lastIndexOf('.'))))].join(' or ')}; list it in the providers of a module the app imports`
      : `no @DtmWorkflow named "${name}" (known: ${known.length ? known.join(', ') : 'none'})`,
  workflowNotStatic: (name: string, handler: string, scope: 'request-scoped' | 'transient') =>
    `@DtmWorkflow('${name}') is on ${handler}, whose provider is ${scope === 'transient' ? 'transient (Scope.TRANSIENT)' : 'request-scoped (Scope.REQUEST, or it depends on REQUEST or a request-scoped provider)'}: DTM runs and resumes a workflow outside any request, and no instance of that provider with its dependencies exists there (the workflow would run with them undefined and stay pending forever); put the workflow on a provider of the default scope (resolve a request-scoped service inside it with ModuleRef.resolve)`,
  workflowStepTarget: (branchId: string, op: string, target: string) =>
    `workflow step ${branchId} (op ${op}) calls ${JSON.stringify(redactUrl(target))}, which nothing can be called at: a workflow's steps and their callbacks call http(s):// URLs and gRPC targets (host:port/package.Service/Method) only`,
  workflowStepBranchName: (branchId: string, op: string, name: string) =>
    `workflow step ${branchId} (op ${op}) calls ${JSON.stringify(name)}, a branch name: a workflow's steps and their callbacks take the target itself, an http(s):// URL or a gRPC target (host:port/package.Service/Method), not a branch name; for a decorated branch of this app, app.get(DtmBranchRegistry).target(kind, name, protocol) gives it (e.g. target('saga-action', ${JSON.stringify(name)}, 'grpc') for its @GrpcMethod, 'http' for its route)`,
  workflowPrepareUnanswered: (name: string, gid: string, cause: string) =>
    `executeWorkflow(${JSON.stringify(name)}, gid ${JSON.stringify(gid)}): DTM may hold the workflow prepared and resume it by itself; call executeWorkflow again with the same gid, never a new one (both would run). Its prepareWorkflow call: ${cause}`,
  workflowPreparedUnread: (name: string, gid: string, cause: string) =>
    `executeWorkflow(${JSON.stringify(name)}, gid ${JSON.stringify(gid)}): DTM took the workflow over gRPC and holds it prepared, but reading it back from DTM's HTTP API (server_url) failed, so it did not run here; it runs once server_url answers (DTM's resume reads it back the same way): call executeWorkflow again with the same gid, never a new one (both would run), and check server_url. The read: ${cause}`,
  workflowForceStopped: (name: string, gid: string) =>
    `workflow ${JSON.stringify(name)} (gid ${gid}) is failed in DTM without a rollback reason: it was stopped (forceStop), and none of its rollback callbacks ran; undo its steps' effects yourself if needed`,
  workflowLoadedLate: (name: string, handler: string) =>
    `@DtmWorkflow('${name}') is on ${handler}, whose module was loaded after start-up (LazyModuleLoader): workflows are found when the app starts, as DTM may resume one on any instance, also one that never loaded that module; import its module in the app's modules at start-up`,
  workflowProviderTwice: (name: string, handler: string, modules: string[]) =>
    `@DtmWorkflow('${name}') is on ${handler}, a provider listed by ${modules.join(' and ')}, which makes an instance each: list it in one module and export it from there`,
  duplicateWorkflow: (name: string, handlers: string[]) => `@DtmWorkflow('${name}') is on ${handlers.join(' and ')}: workflow names must be unique; rename one (a new version: a new name)`,
  noWorkflowProto: () =>
    "cannot start a gRPC workflow: DTM resumes it at the app's gRPC server (workflow.Workflow/Execute), which does not load the workflow proto, or does not list its package 'workflow' (Nest serves only the listed packages), so every resume would answer UNIMPLEMENTED; add both to the gRPC microservice's options (package: [..., 'workflow'], protoPath: [..., DTM_WORKFLOW_PROTO]), or start the workflow with { protocol: 'http' }",
  noWorkflowResume: (protocol: string) =>
    protocol === 'grpc'
      ? 'cannot build the gRPC resume target of workflows: set lynx.dtm.grpc_app_address (or connect the gRPC microservice, with the workflow proto, before starting a workflow)'
      : 'cannot build the URL DTM resumes workflows at: set lynx.dtm.app_url, or start workflows after app.listen()',
  workflowResumeRefused: (name: string, gid: string) =>
    `a call to resume workflow ${quotedCallerValue(name)} with gid ${quotedCallerValue(gid)} was refused: DTM has no such workflow under that name (the resume endpoint only resumes workflows DTM holds, with the input DTM stored)`,
  workflowNotJson: (what: string, reason: string) =>
    `${what} cannot be stored as JSON (${reason}): DTM records it as JSON text; give plain JSON values (a BigInt as a string or a number, no cycles)`,
  gidTakenMeanwhile: (gid: string, transType: string, status: string) =>
    `DTM's record of ${gid} ("${status}") holds another transaction's steps, not this ${transType}'s: another submit under the gid got there at the same time (after this one's check that the gid was free). DTM v1.19 took this submit too and may have run this ${transType}'s steps over the other transaction, keeping no record of them, so their outcome is not known: check what its branches did; never submit it again, under this gid or a new one, before you know`,
  gidHeldOtherCase: (held: string, transType: string) =>
    `DTM answers it as ${JSON.stringify(held)}, a ${transType} of another gid that differs only in case: DTM's MySQL store compares gids without case, so there they are one transaction (a submit would be taken as that one, and its outcome is not this one's). Give each transaction a gid of its own, not one that differs from another only in case (generateGid(), or gids in one case)`,
  gidTakenOtherCase: (gid: string, held: string, transType: string, status: string) =>
    `DTM's record of ${gid} is ${JSON.stringify(held)} ("${status}"), another gid that differs only in case (DTM's MySQL store compares gids without case): another ${transType} under it took this submit (it got there after this one's check), and DTM may have run this ${transType}'s steps as that one's, so their outcome is not known: check what its branches did; never submit it again before you know, and give each transaction a gid of its own (not one that differs from another only in case)`,
  gidHeldUnfinished: (transType: string, status: string, own: string) =>
    transType === own
      ? `another ${own}, still running: checked before the submit, which DTM v1.19 would take for a ${own} it holds "${status}" and run this one's steps over it`
      : `a ${transType}, not this ${own}: checked before the submit, which DTM v1.19 would take and drive that ${transType} as this ${own}`,
  workflowGidHeld: (transType: string, storedName: unknown, name: string) =>
    `${transType === 'workflow' ? `workflow ${JSON.stringify(storedName)}` : `a ${transType}`}, not workflow ${JSON.stringify(name)}`,
  observableAbandoned: (handler: string) =>
    `the Observable ${handler} answered was unsubscribed before it ended (an interceptor of the app gave up on it, a timeout() say): the call was answered without the handler's outcome, which the handler may still reach`,
  observableNeverSubscribed: (handler: string) =>
    `the Observable ${handler} answered was never subscribed (the call was answered before the handler answered: an interceptor of the app gave up on it, a timeout() say): the call was answered without the handler's outcome`,
  workflowResumeUnknown: (name: string, gid: string) => `DTM resumes workflow ${quotedCallerValue(name)} (gid ${gid}), which this app does not have: deploy it here, or forceStop the gid`,
} as const;

/**
 * The messages of a call that got no (full) answer, by whom it called: the DTM server, or a branch
 * the module calls itself (TCC Try, XA). Both transports pick theirs here.
 */
export const UNANSWERED = {
  dtm: { unavailable: MESSAGES.unavailable, noAnswer: MESSAGES.noAnswer, cut: MESSAGES.answerCut, proxy: MESSAGES.proxyUnavailable, tooLarge: MESSAGES.answerTooLarge },
  /** DTM over gRPC: the address to check is lynx.dtm.grpc_server. */
  dtmGrpc: { unavailable: MESSAGES.grpcUnavailable, noAnswer: MESSAGES.noAnswer, cut: MESSAGES.answerCut, proxy: MESSAGES.proxyUnavailable, tooLarge: MESSAGES.answerTooLarge },
  branch: { unavailable: MESSAGES.branchUnavailable, noAnswer: MESSAGES.branchNoAnswer, cut: MESSAGES.branchAnswerCut, proxy: MESSAGES.branchProxyUnavailable, tooLarge: MESSAGES.branchAnswerTooLarge },
} as const;

/** The messages of {@link UNANSWERED} for one kind of peer. */
export type UnansweredMessages = (typeof UNANSWERED)[keyof typeof UNANSWERED];

/** What adds a branch of each kind to a transaction by name, for the message of a name of another kind. */
const BRANCH_USE: Record<string, string> = {
  '@SagaAction': "a saga's add()",
  '@TccTry': "a TCC's callBranch()",
  '@XaBranch': "an XA transaction's callBranch()",
  '@MsgBranch': "a message's add()",
  '@MsgQueryPrepared': "a message's back-check (doAndSubmit(), doAndSubmitDb())",
};

/** "could not reach" the DTM server at `url`, naming the configuration key (`key`) that points at it. */
function dtmUnreachable(key: 'server_url' | 'grpc_server') {
  return (url: string, cause: string, timeoutSeconds: number): string => {
    // grpc-js's "Protocol error": the peer answered bytes that are no HTTP/2, most often DTM's HTTP port given as grpc_server
    const address = key === 'grpc_server' ? notHttp2At(url, cause) : undefined;
    if (address) {
      return `could not reach ${url} (${cause}): something listens at ${address} but does not speak gRPC (HTTP/2): an HTTP/1 server, such as DTM's HTTP port (36789 by default); lynx.dtm.grpc_server must be DTM's gRPC port (36790 by default) (timeout ${timeoutSeconds} s)`;
    }
    // Node's HTTP parser: the peer answered bytes that are no HTTP/1 response, most often DTM's gRPC port given as server_url
    const http1 = key === 'server_url' ? notHttp1At(url, cause) : undefined;
    if (http1) {
      return `could not reach ${url} (${cause}): something listens at ${http1} but does not speak HTTP/1: an HTTP/2-only server (gRPC), such as DTM's gRPC port (36790 by default); lynx.dtm.server_url must be DTM's HTTP port (36789 by default) (timeout ${timeoutSeconds} s)`;
    }
    return `could not reach ${url} (${cause}${resetNote(cause, 'the DTM server')}); check that the DTM server runs there and lynx.dtm.${key} points at it (timeout ${timeoutSeconds} s)`;
  };
}

/** What to check when a gRPC branch target is an HTTP/1 server. */
const NOT_GRPC_FIX =
  "an HTTP/1 server, such as an app's HTTP port given where its gRPC port belongs; a gRPC target must be the address of the service's gRPC server (the url of its gRPC microservice; for this app's own @GrpcMethod branches, lynx.dtm.grpc_app_address)";

/**
 * For a gRPC branch `target` (`host:port/package.Service/Method`) whose call failed with grpc-js's
 * "Protocol error" (the peer answered bytes that are no HTTP/2): what listens there and which
 * setting to check; undefined for any other cause, or an http(s) URL.
 */
function notGrpcAt(target: string, cause: string): string | undefined {
  const address = notHttp2At(target, cause);
  return address && `something listens at ${address} but does not speak gRPC (HTTP/2): ${NOT_GRPC_FIX}`;
}

/** The address of gRPC `target` (`host:port/...`) when its call failed with grpc-js's "Protocol error" (the peer answered bytes that are no HTTP/2); else undefined. */
function notHttp2At(target: string, cause: string): string | undefined {
  return /^https?:/i.test(target) || !/Protocol error/.test(cause) ? undefined : target.split('/')[0];
}

/** The host:port of http(s) `url` when its call failed with Node's HPE_INVALID_CONSTANT (the peer answered bytes that are no HTTP/1 status line); else undefined. */
function notHttp1At(url: string, cause: string): string | undefined {
  if (!/HPE_INVALID_CONSTANT/.test(cause)) return undefined;
  try {
    return new URL(url).host;
  } catch {
    return undefined;
  }
}

/**
 * @internal `text`, or when it is longer than `max` its start and `…`: cut after the last whole word within
 * `max` (a word ending right at `max` kept), unless that would drop more than a fifth of it (one long
 * word: a URL, a JSON body without spaces), then at `max`, never inside a surrogate pair.
 */
export function truncate(text: string, max = 300): string {
  if (text.length <= max) return text;
  let head = text.slice(0, max);
  const space = /\s/.test(text[max]) ? max : head.search(/\s+\S*$/);
  if (space >= max * 0.8) head = head.slice(0, space).trimEnd();
  else if (/[\uD800-\uDBFF]$/.test(head)) head = head.slice(0, -1);
  return `${head}…`;
}

/** Statuses a proxy, load balancer or gateway answers when the server behind it did not (Bad Gateway, Service Unavailable, Gateway Timeout). */
const GATEWAY_STATUSES = new Map<number, string>([
  [502, 'Bad Gateway'],
  [503, 'Service Unavailable'],
  [504, 'Gateway Timeout'],
]);

/** How a peer's UNAVAILABLE answer reads: `gRPC UNAVAILABLE`, or `HTTP 503 (Service Unavailable) to a gRPC call` for a plain HTTP status (`answer`: the status code, or `grpc`). */
function grpcAnswerName(answer: string): string {
  const status = Number(answer);
  return answer === 'grpc' ? 'gRPC UNAVAILABLE' : `HTTP ${status}${GATEWAY_STATUSES.has(status) ? ` (${GATEWAY_STATUSES.get(status)})` : ''} to a gRPC call`;
}

/** For a connection reset or cut: who may have done it (`peer`, or something between this app and it). */
function resetNote(cause: string, peer: string): string {
  // grpc-js: "Connection dropped" for a connection closed (FIN) under a call, as by a process that died after reading it
  return /ECONNRESET|EPIPE|socket hang up|ECONNABORTED|RST_STREAM|Connection dropped/i.test(cause)
    ? `: the connection was reset, by ${peer} (crashed or restarting) or by a proxy / load balancer between this app and it; the request may or may not have reached ${peer}`
    : '';
}
