import { createTestApp, TEST_BOOTSTRAP_KEY, TestApp } from '@app/testing';
import type { Response } from 'supertest';

/**
 * No request input may make the API answer a 5xx, and every 4xx uses the error envelope
 * (README "Behaviour you can rely on"). The operations come from the app's own OpenAPI document;
 * each one is sent hostile path parameters, bodies, content types, query parameters and headers.
 * Every answer is checked and all problems of a test are reported together.
 */

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
type Segment = string | number;
/** `raw`: the whole Authorization header; `{token}` in it becomes a valid token (a fresh one where it would be revoked). */
type Auth = 'admin' | 'user' | 'fresh' | 'freshUser' | 'none' | { raw: string };

interface Schema {
  type?: string;
  $ref?: string;
  allOf?: Schema[];
  properties?: Record<string, Schema>;
  items?: Schema;
}

interface OpenApiOperation {
  parameters?: { name: string; in: string }[];
  requestBody?: { content?: Record<string, { schema?: Schema }> };
}

interface Operation {
  method: Method;
  template: string;
  pathParams: string[];
  queryParams: string[];
  headerParams: string[];
  schema?: Schema;
}

interface Probe {
  method: Method;
  template: string;
  /** Encoded path and query string. */
  url: string;
  /** What is hostile about this request, for the report. */
  input: string;
  /** The raw payload, sent byte for byte. */
  body?: string | Buffer;
  /** Content-Type to send with the body; left out: no Content-Type header at all. */
  contentType?: string;
  headers?: Record<string, string>;
  auth?: Auth;
}

/** One answer that broke the rules: what was sent and what came back. */
interface Failure {
  key: string;
  input: string;
  body: string;
}

type Kind = 'user' | 'role' | 'roleName' | 'webhook' | 'delivery' | 'apiKey' | 'org';

const CONCURRENCY = 8;
const METHODS: Method[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];
/** Operations that need no token (they get none unless a probe says otherwise). */
const PUBLIC = new Set(['/health', '/.well-known/jwks.json', '/v2/auth/jwks', '/v2/auth/token', '/v2/auth/verify-email', '/v2/auth/password/forgot', '/v2/auth/password/reset']);
/** These revoke the bearer token they are called with: each probe gets a token of its own. */
const CONSUMES_TOKEN = new Set(['/v2/auth/refresh', '/v2/auth/revoke']);
const COMMON_QUERY = ['limit', 'offset', 'cursor', 'sort', 'search', 'q', 'filters', 'fields', 'include', 'status', 'role', 'soft_delete', 'include_deleted'];

/** Every documented body property is set to each of these. */
const HOSTILE_VALUES: [string, unknown][] = [
  ['null', null],
  ['true', true],
  ['-1', -1],
  ['1e308', 1e308],
  ['2**53+1', 2 ** 53 + 1],
  ["''", ''],
  ["'x'x10000", 'x'.repeat(10_000)],
  ["['a']", ['a']],
  ['{a:{b:{c:1}}}', { a: { b: { c: 1 } } }],
  ['"\\u0000"', '\u0000'],
  ['lone surrogate "\\ud800"', '\ud800'],
];

/** More, by the property's documented type. */
const EXTRA_VALUES: Record<string, [string, unknown][]> = {
  string: [
    ["' '", ' '],
    ['unicode', 'ユーザー'],
    ['sql', "' OR 1=1;--"],
    ["'x'x300", 'x'.repeat(300)],
    ['surrogate email', '\ud800@example.com'],
    ['emoji x100', '🙂'.repeat(100)],
  ],
  array: [
    ['[null]', [null]],
    ['[1]', [1]],
    ['["\\u0000"]', ['\u0000']],
    ['["\\ud800"]', ['\ud800']],
    ['[{}]', [{}]],
    ['[[]]', [[]]],
    ['[]', []],
    ["['user:read'] x1000", Array(1000).fill('user:read')],
    ["['']", ['']],
    ["['x'x10000]", ['x'.repeat(10_000)]],
    ['"*"', '*'],
  ],
  object: [
    ['{k:"\\u0000"}', { k: '\u0000' }],
    ['{"\\u0000":1}', { '\u0000': 1 }],
    ['{k:"\\ud800"}', { k: '\ud800' }],
    ['{"\\ud800":1}', { '\ud800': 1 }],
    ['{"":1}', { '': 1 }],
    ['{big:"x"x20000}', { big: 'x'.repeat(20_000) }],
    ['{n:1e308}', { n: 1e308 }],
    ['{arr:[1]x5000}', { arr: Array(5000).fill(1) }],
    ['{}', {}],
    ['[]', []],
    ['"{}"', '{}'],
  ],
  number: [
    ['0', 0],
    ['1', 1],
    ['1.5', 1.5],
    ['2**31', 2 ** 31],
    ['-2**31-1', -(2 ** 31) - 1],
    ['1e-308', 1e-308],
    ['"1"', '1'],
  ],
  boolean: [
    ['"true"', 'true'],
    ['0', 0],
    ['1', 1],
  ],
};

/** Hostile values for every query parameter (already URL-encoded where they must be). */
const QUERY_VALUES: [string, string][] = [
  ["''", ''],
  ['-1', '-1'],
  ['0', '0'],
  ['1e9', '1e9'],
  ['NaN', 'NaN'],
  ['1.5', '1.5'],
  ['99999999999999999999', '99999999999999999999'],
  ['[]', enc('[]')],
  ['{"a":', enc('{"a":')],
  ['{}', enc('{}')],
  ['null', 'null'],
  ["'x'x5000", 'x'.repeat(5000)],
  ['sql', enc("' OR '1'='1'; DROP TABLE users;--")],
  ['%', enc('%')],
  ['backslash', enc('\\')],
  ['unicode', enc('ユーザー')],
  ['%00', '%00'],
  ['raw %ff', '%ff'],
  ['raw %', '%'],
  ['truncated utf-8 %E3%81', '%E3%81'],
  ['encoded surrogate %ED%A0%80', '%ED%A0%80'],
];
/** A few for the common parameters an operation does not document. */
const QUERY_VALUES_SHORT: [string, string][] = [
  ["''", ''],
  ["'x'x3000", 'x'.repeat(3000)],
  ['{"a":', enc('{"a":')],
];

function enc(value: string): string {
  return encodeURIComponent(value);
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…(${text.length} chars)` : text;
}

function isEnvelope(body: unknown): boolean {
  const error = (body as { error?: Record<string, unknown> } | null)?.error;
  return (
    typeof error === 'object' &&
    error !== null &&
    typeof error.code === 'string' &&
    typeof error.message === 'string' &&
    typeof error.request_id === 'string' &&
    typeof error.timestamp === 'string'
  );
}

/**
 * The failures grouped by operation, status and error code: each line names the operation, the
 * status, how many inputs got it, the shortest of those inputs (then a few more) and one answer.
 */
function report(failures: Failure[]): string[] {
  const groups = new Map<string, Failure[]>();
  for (const f of failures) groups.set(f.key, [...(groups.get(f.key) ?? []), f]);
  return [...groups.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, list]) => {
      const inputs = [...new Set(list.map((f) => f.input))].sort((a, b) => a.length - b.length);
      const more = inputs.length > 4 ? ` … and ${inputs.length - 4} more` : '';
      return `${key} x${list.length} | inputs: ${inputs.slice(0, 4).join(' ; ')}${more} | answer: ${list[0]!.body}`;
    });
}

function jwtClaims(token: string): Record<string, string> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, string>;
}

/** A copy of `body` with `value` at `path`, creating what is missing on the way. */
function setAt(body: Record<string, unknown>, path: Segment[], value: unknown): Record<string, unknown> {
  const copy = structuredClone(body);
  let node: Record<string | number, unknown> = copy;
  path.forEach((segment, i) => {
    if (i === path.length - 1) {
      node[segment] = value;
      return;
    }
    const next = node[segment];
    if (next === null || typeof next !== 'object') node[segment] = typeof path[i + 1] === 'number' ? [] : {};
    node = node[segment] as Record<string | number, unknown>;
  });
  return copy;
}

function nested(depth: number, kind: 'array' | 'object'): string {
  return kind === 'array' ? `${'['.repeat(depth)}${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
}

describe('Robustness: no input makes the API answer a 5xx, and every error uses the envelope', () => {
  let t: TestApp;
  let admin: string;
  let userToken: string;
  let bootstrapKeyId: string;
  const operations: Operation[] = [];
  let schemas: Record<string, Schema> = {};
  const ids = {} as Record<Kind, { real: string; foreign: string }>;
  const cursors = { list: '', search: '' };
  let deletableUser = '';
  /** Set once the DELETE test has deleted the end user (whose token then stops working). */
  let endUserDeleted = false;
  let unique = 0;
  const next = () => `${Date.now().toString(36)}${(unique++).toString(36)}`;

  const resolve = (schema: Schema | undefined): Schema => {
    if (!schema) return {};
    if (schema.$ref) return resolve(schemas[schema.$ref.split('/').pop()!]);
    if (schema.allOf?.length === 1) return resolve(schema.allOf[0]);
    return schema;
  };
  const typeOf = (schema: Schema | undefined): string => {
    const s = resolve(schema);
    return s.type ?? (s.properties ? 'object' : 'string');
  };

  /** Property paths of a body schema, one level into nested objects and arrays of objects. */
  const propertyPaths = (schema: Schema | undefined, depth = 0): { path: Segment[]; type: string }[] => {
    const out: { path: Segment[]; type: string }[] = [];
    for (const [name, sub] of Object.entries(resolve(schema).properties ?? {})) {
      out.push({ path: [name], type: typeOf(sub) });
      if (depth > 0) continue;
      const r = resolve(sub);
      if (r.properties) for (const p of propertyPaths(r, depth + 1)) out.push({ path: [name, ...p.path], type: p.type });
      const items = resolve(r.items);
      if (r.type === 'array' && items.properties) for (const p of propertyPaths(items, depth + 1)) out.push({ path: [name, 0, ...p.path], type: p.type });
    }
    return out;
  };

  /** A body the operation accepts (or nearly), so that one hostile part is what is tested. */
  const validBody = (template: string): Record<string, unknown> | undefined => {
    const n = next();
    switch (template) {
      case '/v2/auth/verify-email':
        return { token: 'not-a-real-token' };
      case '/v2/auth/password/forgot':
        return { organization_id: jwtClaims(admin).org_id, email: 'robust-a@example.com' };
      case '/v2/auth/password/reset':
        return { token: 'not-a-real-token', password: 'Password123!' };
      case '/v2/auth/token':
        return { grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY };
      case '/v2/auth/revoke':
        return {};
      case '/v2/admin/organizations':
        return { name: `Robust ${n}`, plan: 'basic' };
      case '/v2/admin/organizations/{id}':
        return { name: 'Robust Org' };
      case '/v2/api-keys':
        return { name: `robust-${n}`, scopes: ['user:read'] };
      case '/v2/users':
        return { email: `robust-${n}@example.com`, first_name: 'Rob', last_name: 'Ust' };
      case '/v2/users/bulk':
        return { users: [{ email: `robust-bulk-${n}@example.com`, first_name: 'Rob', last_name: 'Ust' }], options: { fail_on_error: false } };
      case '/v2/users/me':
      case '/v2/users/{id}':
        return { first_name: 'Robust' };
      case '/v2/users/{id}/roles':
        return { roles: [ids.roleName.real] };
      case '/v2/users/{id}/preferences':
        return { theme: 'dark', notifications: { email: true } };
      case '/v2/roles':
        return { name: `robust-${n}`, permissions: ['user:read'] };
      case '/v2/roles/{id}':
        return { description: 'robust' };
      case '/v2/webhooks':
        return { url: 'https://hooks.example.com/x', events: ['*'] };
      case '/v2/webhooks/{id}':
        return { events: ['*'] };
      default:
        return undefined;
    }
  };

  /** Preferences are a free-form object the document does not describe: give them a shape to attack. */
  const bodySchema = (op: Operation): Schema | undefined =>
    op.template === '/v2/users/{id}/preferences' ? { type: 'object', properties: { theme: { type: 'string' }, notifications: { type: 'object' } } } : op.schema;

  const kindOf = (template: string, param: string): Kind => {
    if (param === 'deliveryId') return 'delivery';
    if (param === 'role') return 'roleName';
    if (template.startsWith('/v2/users')) return 'user';
    if (template.startsWith('/v2/roles')) return 'role';
    if (template.startsWith('/v2/webhooks')) return 'webhook';
    if (template.startsWith('/v2/api-keys')) return 'apiKey';
    return 'org';
  };

  const fill = (template: string, values: Record<string, string> = {}): string =>
    template.replace(/\{(\w+)\}/g, (_m, name: string) => values[name] ?? enc(ids[kindOf(template, name)].real));

  const pathVariants = (kind: Kind): [string, string][] => {
    const { real, foreign } = ids[kind];
    const otherKind = kind === 'user' ? ids.role.real : ids.user.real;
    return [
      ['real id', enc(real)],
      ["another organization's id", enc(foreign)],
      ['an id of another kind', enc(otherKind)],
      ['well-formed unknown id', enc(`${real.split('_')[0]}_doesnotexist0000000000`)],
      ['x', 'x'],
      ['sql', enc("user_'; DROP TABLE users;--")],
      ["'a'x300", 'a'.repeat(300)],
      ["'a'x5000", 'a'.repeat(5000)],
      ['%00', '%00'],
      ['..%2f..', '..%2f..'],
      ['unicode', enc('ユーザー')],
      ['emoji', enc('😀')],
      ['upper-cased real id', enc(real.toUpperCase())],
      ['real id + %0a', `${enc(real)}%0a`],
      ['real id + space', `${enc(real)}%20`],
      ['raw %ff', '%ff'],
      ['raw %', '%'],
      ['truncated utf-8 %E3%81', '%E3%81'],
      ['encoded surrogate %ED%A0%80', '%ED%A0%80'],
      ['-1', '-1'],
      ['1e308', '1e308'],
      ['null', 'null'],
      ['__proto__', '__proto__'],
      ['constructor', 'constructor'],
    ];
  };

  const defaultAuth = (template: string): Auth => {
    if (PUBLIC.has(template)) return 'none';
    if (CONSUMES_TOKEN.has(template)) return 'fresh';
    if (template === '/v2/users/me') return 'user';
    return 'admin';
  };

  const freshToken = async (): Promise<string> => {
    const res = await t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY });
    if (res.status !== 200) throw new Error(`could not get a token: ${res.status} ${res.text}`);
    return res.body.access_token as string;
  };

  const freshUserToken = async (): Promise<string> => {
    const res = await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: jwtClaims(admin).org_id, email: 'robust-a@example.com', password: 'Password123!' });
    if (res.status !== 200) throw new Error(`could not sign in: ${res.status} ${res.text}`);
    return res.body.access_token as string;
  };

  const jsonProbe = (op: Operation, url: string, input: string, body: unknown, extra: Partial<Probe> = {}): Probe => ({
    method: op.method,
    template: op.template,
    url,
    input,
    body: body === undefined ? undefined : JSON.stringify(body),
    contentType: body === undefined ? undefined : 'application/json',
    ...extra,
  });

  /** Sends one probe; returns a line for the report when the answer breaks the rules. */
  const check = async (p: Probe): Promise<Failure | undefined> => {
    let res: Response;
    try {
      const agent = t.http();
      let req =
        p.method === 'GET' ? agent.get(p.url)
        : p.method === 'POST' ? agent.post(p.url)
        : p.method === 'PUT' ? agent.put(p.url)
        : p.method === 'PATCH' ? agent.patch(p.url)
        : agent.delete(p.url);
      req = req.timeout(30_000);
      const auth = p.auth ?? defaultAuth(p.template);
      if (typeof auth === 'object') {
        const token = auth.raw.includes('{token}') ? (CONSUMES_TOKEN.has(p.template) ? await freshToken() : admin) : '';
        req = req.set('Authorization', auth.raw.replace('{token}', token));
      }
      else if (auth !== 'none') {
        const token = auth === 'admin' ? admin : auth === 'user' ? userToken : auth === 'freshUser' ? await freshUserToken() : await freshToken();
        req = req.set('Authorization', `Bearer ${token}`);
      }
      for (const [name, value] of Object.entries(p.headers ?? {})) req = req.set(name, value);
      if (p.body !== undefined) {
        if (p.contentType !== undefined) req = req.set('Content-Type', p.contentType);
        // A Buffer goes out as it is: no serializer, and no Content-Type unless one was set.
        req = req.serialize((b: unknown) => b as string).send(Buffer.isBuffer(p.body) ? p.body : Buffer.from(p.body, 'utf8'));
      }
      res = await req;
    } catch (error) {
      return { key: `${p.method} ${p.template} -> no answer`, input: `${p.input} (${clip(p.url, 100)})`, body: (error as Error).message };
    }
    // The one documented exception to the envelope: a bulk create rolled back by fail_on_error is
    // 422 with its per-item results (seed §7.1).
    const bulkResults = p.template === '/v2/users/bulk' && res.status === 422 && Array.isArray((res.body as { results?: unknown })?.results);
    const broken = res.status >= 500 ? '' : res.status >= 400 && !isEnvelope(res.body) && !bulkResults ? ' without the error envelope' : undefined;
    if (broken === undefined) return undefined;
    const body = res.body as { error?: { code?: unknown }; code?: unknown } | undefined;
    const code = String(body?.error?.code ?? body?.code ?? '');
    // A 5xx is reported per operation; a missing envelope (the same cause on every route) per status and code.
    const op = `${p.method} ${p.template}`;
    return broken
      ? { key: `${res.status}${broken} ${code}`.trim(), input: `${op} [${p.input}] (${clip(p.url, 100)})`, body: clip(res.text ?? '', 240) }
      : { key: `${op} -> ${res.status} ${code}`.trim(), input: `${p.input} (${clip(p.url, 100)})`, body: clip(res.text ?? '', 240) };
  };

  const run = async (probes: Probe[]): Promise<Failure[]> => {
    const failures: Failure[] = [];
    let i = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (i < probes.length) {
          const failure = await check(probes[i++]!);
          if (failure) failures.push(failure);
        }
      }),
    );
    return failures;
  };

  const created = async (res: Promise<Response> | Response, what: string): Promise<Record<string, unknown>> => {
    const r = await res;
    if (r.status !== 201 && r.status !== 200 && r.status !== 202) throw new Error(`setup: ${what} answered ${r.status} ${r.text}`);
    return r.body as Record<string, unknown>;
  };

  beforeAll(async () => {
    // No webhook worker: the fixtures' deliveries would otherwise go out to hooks.example.com.
    // ROBUSTNESS_LOG=error prints the server's log (with the stack of every 500) while the suite runs.
    t = await createTestApp({ WEBHOOK_WORKERS: '0', ...(process.env.ROBUSTNESS_LOG ? { LOG_LEVEL: process.env.ROBUSTNESS_LOG } : {}) });
    await t.app.listen(0, '127.0.0.1');
    admin = await freshToken();
    bootstrapKeyId = jwtClaims(admin).sub!;
    const auth = (token = admin) => ({ Authorization: `Bearer ${token}` });
    const post = (path: string, body: Record<string, unknown>, token = admin) => t.http().post(path).set(auth(token)).send(body);

    const doc = (await t.http().get('/openapi.json').expect(200)).body as {
      paths: Record<string, Record<string, OpenApiOperation>>;
      components: { schemas: Record<string, Schema> };
    };
    schemas = doc.components.schemas;
    for (const [template, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        if (!METHODS.includes(method.toUpperCase() as Method)) continue;
        const params = op.parameters ?? [];
        operations.push({
          method: method.toUpperCase() as Method,
          template,
          pathParams: params.filter((p) => p.in === 'path').map((p) => p.name),
          queryParams: params.filter((p) => p.in === 'query').map((p) => p.name),
          headerParams: params.filter((p) => p.in === 'header').map((p) => p.name.toLowerCase()),
          schema: op.requestBody?.content?.['application/json']?.schema,
        });
      }
    }

    // This organization's resources.
    const userA = await created(post('/v2/users', { email: 'robust-a@example.com', first_name: 'Rob', last_name: 'A', password: 'Password123!' }), 'user');
    const userD = await created(post('/v2/users', { email: 'robust-d@example.com', first_name: 'Rob', last_name: 'D' }), 'user');
    deletableUser = userD.id as string;
    const role = await created(post('/v2/roles', { name: 'robust-role', permissions: ['user:read'] }), 'role');
    const hook = await created(post('/v2/webhooks', { url: 'https://hooks.example.com/x', events: ['*'] }), 'webhook');
    const delivery = await created(post(`/v2/webhooks/${String(hook.id)}/test`, {}), 'webhook test');
    const key = await created(post('/v2/api-keys', { name: 'robust-disposable', scopes: ['user:read'] }), 'api key');
    await created(post(`/v2/users/${String(userA.id)}/roles`, { roles: ['robust-role'] }), 'role assignment');
    userToken = (
      await created(
        t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: jwtClaims(admin).org_id, email: 'robust-a@example.com', password: 'Password123!' }),
        'password token',
      )
    ).access_token as string;

    // Another organization and its resources. The enterprise one is the "real" organization of
    // the operator routes (so the Default organization, whose key runs this suite, is never changed).
    const orgA = await created(post('/v2/admin/organizations', { name: 'Robust Org', plan: 'enterprise' }), 'organization');
    const orgB = await created(post('/v2/admin/organizations', { name: 'Robust Org B', plan: 'professional' }), 'organization');
    const other = (await created(t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: (orgA.api_key as { key: string }).key }), 'token')).access_token as string;
    const otherUser = await created(post('/v2/users', { email: 'robust-foreign@example.com', first_name: 'F', last_name: 'U' }, other), 'foreign user');
    const otherRole = await created(post('/v2/roles', { name: 'robust-foreign', permissions: [] }, other), 'foreign role');
    const otherHook = await created(post('/v2/webhooks', { url: 'https://hooks.example.com/x', events: ['*'] }, other), 'foreign webhook');
    const otherDelivery = await created(post(`/v2/webhooks/${String(otherHook.id)}/test`, {}, other), 'foreign webhook test');

    ids.user = { real: userA.id as string, foreign: otherUser.id as string };
    ids.role = { real: role.id as string, foreign: otherRole.id as string };
    ids.roleName = { real: 'robust-role', foreign: otherRole.id as string };
    ids.webhook = { real: hook.id as string, foreign: otherHook.id as string };
    ids.delivery = { real: delivery.delivery_id as string, foreign: otherDelivery.delivery_id as string };
    ids.apiKey = { real: key.id as string, foreign: (orgA.api_key as { id: string }).id };
    ids.org = { real: (orgA.organization as { id: string }).id, foreign: (orgB.organization as { id: string }).id };

    cursors.list = ((await t.http().get('/v2/users?limit=1').set(auth()).expect(200)).body.pagination?.next_cursor as string | undefined) ?? '';
    const search = await t.http().get('/v2/users/search?limit=1&q=robust').set(auth()).expect(200);
    cursors.search = (search.body.pagination?.next_cursor as string | undefined) ?? '';
    expect(cursors.list).not.toBe('');
    expect(cursors.search).not.toBe('');
    expect(operations.length).toBeGreaterThan(40);
  }, 60_000);

  afterAll(async () => {
    await t?.close();
  });

  // A probe that revoked the suite's own token would turn every later answer into a 401 and hide the rest.
  afterEach(async () => {
    expect((await t.http().get('/v2/roles').set('Authorization', `Bearer ${admin}`)).status).toBe(200);
    if (!endUserDeleted) expect((await t.http().get('/v2/users/me').set('Authorization', `Bearer ${userToken}`)).status).toBeLessThan(400);
  });

  it('path parameters: real, foreign, malformed and hostile ids', async () => {
    const probes: Probe[] = [];
    for (const op of operations) {
      if (op.method === 'DELETE') continue; // below, after everything else
      for (const param of op.pathParams) {
        for (const [label, value] of pathVariants(kindOf(op.template, param))) {
          probes.push(jsonProbe(op, fill(op.template, { [param]: value }), `${param}=${label}`, validBody(op.template)));
        }
      }
    }
    // Routes that do not exist, methods a path does not have, and odd spellings of real paths.
    for (const [method, url] of [
      ['GET', '/v2/does-not-exist'], ['PATCH', '/v2/roles'], ['DELETE', '/v2/users'], ['PUT', '/v2/api-keys'], ['GET', '/v1/users'],
      ['POST', '/v1/auth/token'], ['GET', `/v2/users/${enc(ids.user.real)}/unknown`], ['GET', '/v2/users/'], ['GET', '//v2//users'],
      ['GET', '/v2/USERS'], ['GET', '/v2/users;x=1'], ['GET', '/v2/users%2fsearch'], ['GET', '/v2/%2e%2e/health'], ['GET', `/v2/${'x'.repeat(5000)}`],
      ['GET', '/openapi.json'], ['GET', '/openapi/v2.1.yaml'], ['GET', '/docs'], ['GET', '/.well-known/unknown'],
    ] as [Method, string][]) {
      probes.push({ method, template: url.length > 60 ? `${url.slice(0, 60)}…` : url, url, input: 'an unknown route or method', auth: 'admin' });
    }
    expect(report(await run(probes))).toEqual([]);
  }, 120_000);

  it('query parameters: documented and common ones, hostile values, arrays and valid combinations', async () => {
    const probes: Probe[] = [];
    const special: Record<string, string[]> = {
      limit: ['1', '100', '101', '25.0', ' 1'],
      offset: ['1000000000', '2147483648', '9223372036854775808'],
      sort: ['created_at:desc', 'email:asc,first_name:desc', 'email:sideways', 'created_at', ':', 'created_at:asc:asc', '["last_login:desc","created_at:asc"]', '[1]', '["a"', 'login_count:asc', 'metadata.x:asc', 'a,b,c,d,e,f', 'created_at:desc,created_at:asc', '{"a":1}', ',', '[null]'],
      fields: ['["id","email","roles"]', 'id,email', 'password_hash', '[1]', '{}', '[]', '["id"', 'metadata,roles', ',,,', '[null]'],
      filters: [
        '{"email":{"contains":"a"}}', '{"metadata.plan":{"eq":"x"}}', '{"metadata.n":{"gt":1e308}}', '{"metadata.n":{"in":[1,"a",true]}}',
        '{"created_at":{"gte":"2025-01-31"}}', '{"created_at":"0000-01-01"}', '{"created_at":"9999-12-31"}', '{"created_at":{"lt":"275760-09-13"}}',
        '{"created_at":{"gte":"0001-01-01T00:00:00Z"}}', '{"created_at":{"gte":"9999-12-31T23:59:59.999999+23:59"}}', '{"updated_at":{"in":["2025-01-01","0000-01-01"]}}',
        '{"last_login":{"lt":"2025-01-31T25:00:00Z"}}', '{"created_at":{"gte":"not-a-date"}}', '{"created_at":"2025-02-30"}',
        '{"login_count":{"gt":"abc"}}', '{"login_count":{"gt":1e308}}', '{"login_count":{"in":[2147483647,-2147483647]}}', '{"login_count":{"contains":"1"}}',
        '{"email_verified":{"eq":"yes"}}', '{"email_verified":{"gt":true}}', '{"id":{"in":[]}}', '{"email":{"in":[1,null,{}]}}',
        '{"status":"deleted"}', '{"status":{"in":["deleted","active"]}}', '{"status":{"gt":"active"}}', '{"role":{"in":["admin",1]}}', '{"role":{"gt":"a"}}', '{"role":{"ne":null}}',
        '{"metadata.":{"eq":1}}', '{"metadata.a\'b":{"eq":1}}', '{"metadata.x":{"eq":null}}', '{"metadata.x":{"contains":1}}', '{"metadata.x":{"lt":"%"}}',
        '{"email":{"eq":"a","ne":"b","contains":"\\\\"}}', '{"first_name":{"contains":"%_\\\\"}}', '{"__proto__":{"eq":1}}', '{"constructor":{"eq":1}}', '{"toString":1}',
        '{"email":{"contains":"\\u0000"}}', '{"email":{"contains":"\\ud800"}}', '{"email":{"bogus":1}}', '{"email":{}}', '{"bogus":1}', '[]', '"x"', '1', 'null',
        JSON.stringify(Object.fromEntries(Array.from({ length: 200 }, (_v, i) => [`metadata.k${i}`, { eq: 'x' }]))),
        JSON.stringify({ id: { in: Array(101).fill('x') } }),
      ],
      status: ['active', 'deleted', 'ACTIVE', 'suspended,active'],
      role: ['admin', 'robust-role', 'nonexistent'],
      include: ['roles', 'preferences', 'roles,preferences,permissions', 'x'],
      include_deleted: ['false', '1', 'yes'],
      soft_delete: ['false', '1', 'yes'],
      q: ['robust rob', 'a '.repeat(100), '%_%'],
      search: ['robust', '%_%'],
    };
    for (const op of operations) {
      if (op.method !== 'GET') continue;
      const base = fill(op.template);
      const add = (query: string, input: string) => probes.push(jsonProbe(op, `${base}?${query}`, input, undefined));
      const documented = new Set(op.queryParams);
      for (const name of new Set([...op.queryParams, ...COMMON_QUERY])) {
        const values = documented.has(name) ? [...QUERY_VALUES, ...(special[name] ?? []).map((v): [string, string] => [v, enc(v)])] : QUERY_VALUES_SHORT;
        for (const [label, value] of values) add(`${name}=${value}`, `${name}=${clip(label, 80)}`);
        add(`${name}=1&${name}=2`, `${name} twice`);
        if (documented.has(name)) {
          add(`${name}[]=1`, `${name}[]=1`);
          add(`${name}[a]=1`, `${name}[a]=1`);
          add(name, `bare ${name}`);
        }
      }
      if (documented.has('cursor')) {
        const mine = op.template === '/v2/users' ? cursors.list : cursors.search;
        const theirs = op.template === '/v2/users' ? cursors.search : cursors.list;
        const tampered = `${mine.slice(0, -2)}${mine.endsWith('A') ? 'B' : 'A'}${mine.slice(-1)}`;
        const combos: [string, string][] = [
          [`cursor=${enc(mine)}`, 'a valid cursor'],
          [`cursor=${enc(mine)}&limit=100`, 'a valid cursor, another page size'],
          [`cursor=${enc(mine)}&sort=email:asc`, 'a valid cursor, another sort'],
          [`cursor=${enc(mine)}&filters=${enc('{"status":"deleted"}')}&q=x&search=x&role=admin&status=active`, 'a valid cursor, other filters'],
          [`cursor=${enc(mine)}&offset=5`, 'a valid cursor with offset'],
          [`cursor=${enc(theirs)}`, "the other endpoint's cursor"],
          [`cursor=${enc(tampered)}`, 'a tampered cursor'],
          [`cursor=${enc(mine.split('.')[0] ?? mine)}`, 'a cursor without its signature'],
          [`cursor=${enc(Buffer.from('{"v":["x"],"id":"user_x"}').toString('base64url'))}`, 'an unsigned JSON cursor'],
          [`cursor=${enc(`${Buffer.from('[1,2,3]').toString('base64url')}.${mine.split('.').pop() ?? ''}`)}`, 'a forged payload with a real signature'],
        ];
        for (const [query, input] of combos) add(query, input);
      }
      if (op.template === '/v2/users/search') {
        add(`q=robust&filters=${enc('{"email":{"contains":"robust"},"created_at":{"gte":"2020-01-01"},"metadata.a":{"eq":1}}')}&sort=${enc('["last_login:desc","created_at:asc"]')}&fields=${enc('["id","email","roles","metadata"]')}&limit=2`, 'a valid full search');
      }
      if (op.template === '/v2/users') add('limit=5&offset=0&role=admin&status=active&sort=email:asc&search=rob', 'a valid full list');
    }
    expect(report(await run(probes))).toEqual([]);
  }, 120_000);

  it('headers: If-Match, Idempotency-Key, X-Request-Id and Authorization garbage', async () => {
    const probes: Probe[] = [];
    const real = (op: Operation) => (op.pathParams.length ? ids[kindOf(op.template, op.pathParams[0]!)].real : 'x');
    const forgedJwt = (header: Record<string, unknown>, claims: Record<string, unknown>) =>
      `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${Buffer.from('sig').toString('base64url')}`;
    const adminClaims = jwtClaims(admin);
    const authorizations: [string, string][] = [
      ['Bearer', 'Bearer'],
      ['Bearer + space', 'Bearer '],
      ['Bearer a.b.c', 'Bearer a.b.c'],
      ['Basic xyz', 'Basic xyz'],
      ['Basic of the API key', `Basic ${Buffer.from(`${TEST_BOOTSTRAP_KEY}:`).toString('base64')}`],
      ['the API key as a bearer', `Bearer ${TEST_BOOTSTRAP_KEY}`],
      ['lower-case scheme', 'bearer {token}'],
      ['token + trailing junk', 'Bearer {token} junk'],
      ['a comma list', 'Bearer {token}, Bearer x'],
      ['token with a flipped signature', `Bearer ${admin.slice(0, -3)}${admin.endsWith('AAA') ? 'BBB' : 'AAA'}`],
      ['alg none', `Bearer ${forgedJwt({ alg: 'none', typ: 'JWT' }, adminClaims)}.`.replace(/\.$/, '')],
      ['unknown kid', `Bearer ${forgedJwt({ alg: 'ES256', kid: '../../etc/passwd' }, adminClaims)}`],
      ['garbage claims', `Bearer ${forgedJwt({ alg: 'ES256' }, { sub: 1, org_id: null, scope: 42, exp: 'never' })}`],
      ['header not base64', 'Bearer %%%.%%%.%%%'],
      ['a 20 KB token', `Bearer ${'a'.repeat(20 * 1024)}`],
      ['latin-1 bytes', 'Bearer \u00ff\u00fe'],
    ];
    for (const op of operations) {
      if (op.method === 'DELETE') continue; // below
      const url = fill(op.template);
      const body = validBody(op.template);
      const withHeaders = (input: string, headers: Record<string, string>, auth?: Auth) => probes.push(jsonProbe(op, url, input, body, { headers, auth }));
      if (op.headerParams.includes('if-match')) {
        for (const value of ['garbage', '""', '"x"', 'W/"abc"', '*, *', '"a", "b"', `"${real(op)}.v99999999999999999999"`, `"${real(op)}.v-1"`, `"${real(op)}.v1e3"`, `"${real(op)}.vNaN"`, `"${real(op)}.v0x1"`, `"${real(op)}.v"`, `"${real(op)}"`, `W/"${real(op)}.v1"`, `"${'x'.repeat(8000)}"`, '\u00ff']) {
          withHeaders(`If-Match: ${clip(value, 50)}`, { 'If-Match': value });
        }
      }
      if (op.method === 'POST') {
        for (const value of [' ', 'x'.repeat(255), 'x'.repeat(256), 'x'.repeat(8000), '\u00fc', "'; DROP TABLE idempotency_keys;--", 'tab\tkey', `k-${next()}`]) {
          withHeaders(`Idempotency-Key: ${clip(JSON.stringify(value), 50)}`, { 'Idempotency-Key': value });
        }
      }
      for (const value of ['', 'x'.repeat(129), '../../etc', '\u00fc', 'x'.repeat(8000)]) {
        withHeaders(`X-Request-Id: ${clip(JSON.stringify(value), 50)}`, { 'X-Request-Id': value });
      }
      for (const [label, value] of authorizations) withHeaders(`Authorization: ${label}`, {}, { raw: value });
      if (op.template === '/v2/users/me') withHeaders('an API key token on /users/me', {}, 'admin');
      if (!PUBLIC.has(op.template)) withHeaders("an end user's token", {}, CONSUMES_TOKEN.has(op.template) ? 'freshUser' : 'user');
    }
    expect(report(await run(probes))).toEqual([]);
  }, 120_000);

  it('request bodies: hostile JSON, hostile values for every documented property, forbidden keys, deep nesting, wrong content types', async () => {
    const probes: Probe[] = [];
    for (const op of operations) {
      if (op.method !== 'POST' && op.method !== 'PUT' && op.method !== 'PATCH') continue;
      const url = fill(op.template);
      const valid = validBody(op.template) ?? {};
      const schema = bodySchema(op);
      const raw = (input: string, body: string | Buffer, contentType: string | undefined = 'application/json') =>
        probes.push({ method: op.method, template: op.template, url, input, body, contentType });
      const json = (input: string, body: unknown) => probes.push(jsonProbe(op, url, input, body));

      for (const body of ['null', '[]', '"string"', '123', '{}', 'true', '[{}]', '{', '{"a":1}{"b":2}', '{"a":1,}', "{'a':1}", 'NaN', '\ufeff{}', '{"a":"\\ud800"}', '{"a":"\\u0000"}', '{"a":"\\x"}']) {
        raw(`raw ${JSON.stringify(body)}`, body);
      }
      raw('an empty body with Content-Type: application/json', '');
      raw('a 1.1 MiB body', JSON.stringify({ ...valid, pad: 'x'.repeat(1.1 * 1024 * 1024) }));
      raw('a 1.1 MiB body without Content-Type', 'x'.repeat(1.1 * 1024 * 1024), undefined);

      const paths = schema ? propertyPaths(schema) : [];
      if (paths.length) {
        for (const [label, value] of HOSTILE_VALUES) {
          json(`every property = ${label}`, Object.fromEntries(Object.keys(resolve(schema).properties ?? {}).map((k) => [k, value])));
        }
      }
      for (const { path, type } of paths) {
        for (const [label, value] of [...HOSTILE_VALUES, ...(EXTRA_VALUES[type] ?? [])]) {
          json(`${path.join('.')} = ${label}`, setAt(valid, path, value));
        }
      }

      json('an unknown key', { ...valid, unknown_field: 1 });
      json('an empty key', { ...valid, '': 1 });
      json('a 10000-char key', { ...valid, ['k'.repeat(10_000)]: 1 });
      json('1000 unknown keys', { ...valid, ...Object.fromEntries(Array.from({ length: 1000 }, (_v, i) => [`k${i}`, i])) });
      const validJson = JSON.stringify(valid);
      const withKey = (key: string) => (validJson === '{}' ? `{${key}}` : validJson.replace(/^\{/, `{${key},`));
      raw('{"__proto__":{"polluted":true}}', '{"__proto__":{"polluted":true}}');
      raw('{"constructor":{"prototype":{"polluted":true}}}', '{"constructor":{"prototype":{"polluted":true}}}');
      raw('a valid body with "__proto__"', withKey('"__proto__":{"polluted":true}'));
      raw('a valid body with "constructor"', withKey('"constructor":{"prototype":{"polluted":true}}'));
      raw('a valid body with "constructor": 1', withKey('"constructor":1'));
      raw('a nested "__proto__"', withKey('"nested":{"__proto__":{"polluted":true}}'));
      raw('a duplicated key', withKey(`"${Object.keys(valid)[0] ?? 'a'}":"dup"`));
      raw('a deep array (depth 1000)', nested(1000, 'array'));
      raw('a deep object (depth 1000)', nested(1000, 'object'));
      raw('a deep object (depth 100000, under 1 MiB)', nested(100_000, 'object'));
      for (const { path, type } of paths) {
        if (type !== 'object' && type !== 'array') continue;
        const at = (inner: string) => JSON.stringify(setAt(valid, path, '__HOLE__')).replace('"__HOLE__"', inner);
        raw(`${path.join('.')} = depth-1000 object`, at(nested(1000, 'object')));
        raw(`${path.join('.')} = depth-1000 array`, at(nested(1000, 'array')));
        raw(`${path.join('.')} = depth-10000 object`, at(nested(10_000, 'object')));
        raw(`${path.join('.')} with a "__proto__" key`, at('{"__proto__":{"polluted":true}}'));
      }
      const firstString = paths.find((p) => p.type === 'string' && p.path.length === 1)?.path[0];
      if (firstString !== undefined) {
        const bytes = (label: string, b: number[]) =>
          raw(`${String(firstString)} = invalid UTF-8 ${label}`, Buffer.concat([Buffer.from(`{"${String(firstString)}":"`), Buffer.from(b), Buffer.from('"}')]));
        bytes('FF', [0xff]);
        bytes('C3 28', [0xc3, 0x28]);
        bytes('ED A0 80 (a surrogate)', [0xed, 0xa0, 0x80]);
        bytes('C0 80 (overlong NUL)', [0xc0, 0x80]);
      }

      for (const contentType of [
        'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1', 'application/json; charset=utf-16',
        'application/merge-patch+json', 'multipart/form-data; boundary=x', 'APPLICATION/JSON', 'application/json; charset=utf-8; charset=latin1', ';',
      ]) {
        raw(`Content-Type: ${contentType}`, validJson, contentType);
      }
      raw('no Content-Type', validJson, undefined);
      raw('a form body', 'a=1&b=2', 'application/x-www-form-urlencoded');
      raw('a latin-1 body', Buffer.from(JSON.stringify({ ...valid, [firstString ?? 'a']: 'caf\u00e9' }), 'latin1'), 'application/json; charset=latin1');
    }
    // The token endpoint's failures count towards the per-IP limit, which also stops the token
    // requests of the other probes: it goes last.
    const last = (p: Probe) => (p.template === '/v2/auth/token' ? 1 : 0);
    probes.sort((a, b) => last(a) - last(b));
    expect(report(await run(probes))).toEqual([]);
  }, 180_000);

  it('DELETE operations: hostile ids, If-Match and query garbage, then the real deletes and what follows them', async () => {
    const deletes = operations.filter((op) => op.method === 'DELETE');
    const first: Probe[] = [];
    for (const op of deletes) {
      for (const param of op.pathParams) {
        for (const [label, value] of pathVariants(kindOf(op.template, param))) {
          if (label === 'real id') continue;
          first.push(jsonProbe(op, fill(op.template, { [param]: value }), `${param}=${label}`, undefined));
        }
      }
      const id = ids[kindOf(op.template, op.pathParams[0]!)].real;
      if (op.template === '/v2/api-keys/{id}' && id === bootstrapKeyId) throw new Error('the disposable key must not be the bootstrap key');
      for (const value of ['garbage', '""', 'W/"abc"', '*, *', `"${id}.v99999999999999999999"`, `"${id}.v-1"`, `"${id}.vNaN"`, `"${id}"`, `"${'x'.repeat(8000)}"`]) {
        first.push(jsonProbe(op, fill(op.template), `If-Match: ${clip(value, 50)}`, undefined, { headers: { 'If-Match': value } }));
      }
      first.push(jsonProbe(op, fill(op.template), 'a body on a DELETE', { a: 1 }));
      first.push({ method: op.method, template: op.template, url: fill(op.template), input: 'a text body on a DELETE', body: 'x', contentType: 'text/plain' });
      for (const [label, value] of QUERY_VALUES_SHORT) first.push(jsonProbe(op, `${fill(op.template)}?unknown=${value}`, `unknown=${label}`, undefined, { headers: { 'If-Match': '"stale.v1"' } }));
    }
    const deleteUser = deletes.find((op) => op.template === '/v2/users/{id}')!;
    for (const [label, value] of [...QUERY_VALUES, ['yes', 'yes'], ['1', '1'], ['TRUE', 'TRUE'], ['twice', 'true&soft_delete=false']] as [string, string][]) {
      // A stale If-Match keeps the user in place whatever the query says, if the query is accepted.
      first.push(jsonProbe(deleteUser, `/v2/users/${deletableUser}?soft_delete=${value}`, `soft_delete=${clip(label, 60)}`, undefined, { headers: { 'If-Match': `"${deletableUser}.v999"` } }));
    }
    const failures = await run(first);

    // The real deletes, one at a time, then the operations on what was deleted.
    const sequential: Probe[] = [];
    const userOp = (method: Method, template: string) => operations.find((o) => o.method === method && o.template === template)!;
    sequential.push(jsonProbe(deleteUser, `/v2/users/${deletableUser}?soft_delete=true`, 'soft delete', undefined));
    sequential.push(jsonProbe(deleteUser, `/v2/users/${deletableUser}?soft_delete=true`, 'soft delete again', undefined));
    sequential.push(jsonProbe(userOp('GET', '/v2/users/{id}'), `/v2/users/${deletableUser}?include_deleted=true`, 'a soft-deleted user', undefined));
    sequential.push(jsonProbe(userOp('PATCH', '/v2/users/{id}'), `/v2/users/${deletableUser}`, 'update a soft-deleted user', { first_name: 'Gone' }));
    sequential.push(jsonProbe(userOp('POST', '/v2/users/{id}/roles'), `/v2/users/${deletableUser}/roles`, 'assign a role to a soft-deleted user', { roles: ['robust-role'] }));
    sequential.push(jsonProbe(userOp('POST', '/v2/users/{id}/restore'), `/v2/users/${deletableUser}/restore`, 'restore', undefined));
    sequential.push(jsonProbe(userOp('POST', '/v2/users/{id}/restore'), `/v2/users/${deletableUser}/restore`, 'restore again', undefined));
    for (const op of deletes) {
      sequential.push(jsonProbe(op, fill(op.template), 'the real resource', undefined));
      sequential.push(jsonProbe(op, fill(op.template), 'the real resource, again', undefined));
    }
    for (const op of operations) {
      if (op.method !== 'DELETE' && op.pathParams.length) sequential.push(jsonProbe(op, fill(op.template), 'after the deletes', validBody(op.template)));
    }
    endUserDeleted = true;
    for (const probe of sequential) {
      const failure = await check(probe);
      if (failure) failures.push(failure);
    }
    expect(report(failures)).toEqual([]);
  }, 120_000);
});
