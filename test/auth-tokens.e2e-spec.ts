import { createTestApp, TEST_BOOTSTRAP_KEY, TestApp } from '@app/testing';
import { createHash, createHmac, createPublicKey, randomBytes } from 'node:crypto';
import {
  base64url,
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  generateKeyPair,
  JSONWebKeySet,
  JWK,
  jwtVerify,
  SignJWT,
} from 'jose';
import type { Response } from 'supertest';
import { SigningKeysService } from '../apps/api/src/modules/auth/signing-keys.service';

/** CONTRACT §3 (errors) and §4 (authentication, tokens, API keys), driven through HTTP. */

const TOKEN_PATH = '/v2/auth/token';
const PROTECTED_PATH = '/v2/api-keys'; // needs apikey:manage
const ISO_SECONDS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

/** Status and code in one assertion, so that a failure shows both; then the §3 envelope. */
function expectError(res: Response, status: number, code: string): void {
  expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status, code });
  expect(typeof res.body.error.message).toBe('string');
  expect(res.body.error.request_id).toEqual(expect.any(String));
  expect(res.body.error.timestamp).toMatch(ISO_SECONDS);
  expect(res.headers['content-type']).toMatch(/application\/json/);
}

/** A base62 key in the valid `sk_test_…` format that no organization holds. */
function unknownKey(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let out = '';
  for (const byte of randomBytes(32)) out += alphabet[byte % 62];
  return `sk_test_${out}`;
}

const b64json = (value: unknown): string => base64url.encode(JSON.stringify(value));
const nowSec = (): number => Math.floor(Date.now() / 1000);

/** Signs header.payload by hand with HMAC-SHA256 (jose would refuse some of these secrets). */
function hs256(header: Record<string, unknown>, payload: Record<string, unknown>, secret: string | Buffer): string {
  const input = `${b64json(header)}.${b64json(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

describe('Authentication: tokens, JWKS, revocation and API keys (CONTRACT §3, §4)', () => {
  let t: TestApp;
  let bootstrapToken: string;

  const exchange = (body: unknown) => t.http().post(TOKEN_PATH).send(body as object);

  async function tokenFor(apiKey: string, scope?: string): Promise<string> {
    const res = await exchange({ grant_type: 'client_credentials', api_key: apiKey, ...(scope ? { scope } : {}) });
    expect(res.status).toBe(200);
    return res.body.access_token as string;
  }

  const getProtected = (token: string) => t.http().get(PROTECTED_PATH).set('Authorization', `Bearer ${token}`);

  async function createKey(name: string, scopes?: string[]): Promise<{ id: string; key: string; body: Record<string, unknown> }> {
    const res = await t
      .http()
      .post('/v2/api-keys')
      .set('Authorization', `Bearer ${bootstrapToken}`)
      .send({ name, ...(scopes ? { scopes } : {}) });
    expect(res.status).toBe(201);
    return { id: res.body.id as string, key: res.body.key as string, body: res.body as Record<string, unknown> };
  }

  /** Valid-looking claims of our own tokens, to craft variants of. */
  function claimsLike(real: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
    const original = decodeJwt(real);
    const iat = nowSec();
    return {
      iss: t.config.jwtIssuer,
      aud: t.config.jwtAudience,
      sub: original.sub,
      org_id: original.org_id,
      scope: original.scope,
      jti: randomBytes(16).toString('base64url'),
      iat,
      exp: iat + 3600,
      ...overrides,
    };
  }

  /** Signs claims with our real private key and kid, exactly as the app would. */
  async function signWithRealKey(claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
    const { kid, privateKey } = await t.app.get(SigningKeysService).signingKey();
    return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT', ...header }).sign(privateKey);
  }

  beforeAll(async () => {
    t = await createTestApp();
    const res = await t.http().post(TOKEN_PATH).send({ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY });
    expect(res.status).toBe(200);
    bootstrapToken = res.body.access_token as string;
  });
  afterAll(async () => {
    await t?.close();
  });

  describe('1. token shape and JWKS', () => {
    it('POST /auth/token answers {access_token, token_type: Bearer, expires_in: 86400, scope}, not cached', async () => {
      const res = await exchange({ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY });
      expect(res.status).toBe(200);
      expect(Object.keys(res.body).sort()).toEqual(['access_token', 'expires_in', 'scope', 'token_type']);
      expect(res.body).toMatchObject({ token_type: 'Bearer', expires_in: 86400 });
      expect(res.body.access_token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
      // The bootstrap key holds every scope, platform:admin included.
      expect(res.body.scope.split(' ').sort()).toEqual(
        [
          'user:read', 'user:write', 'user:delete', 'role:manage', 'webhook:manage', 'sso:manage',
          'audit:read', 'analytics:read', 'apikey:manage', 'platform:admin',
        ].sort(),
      );
      expect(res.headers['cache-control']).toMatch(/no-store/);
    });

    it('signs ES256 with a kid published at /v2/auth/jwks and /.well-known/jwks.json (public, no private members); the token verifies with them', async () => {
      const res = await exchange({ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY });
      expect(res.status).toBe(200);
      const token = res.body.access_token as string;
      const header = decodeProtectedHeader(token);
      expect(header.alg).toBe('ES256');
      expect(typeof header.kid).toBe('string');

      const jwksRes = await t.http().get('/v2/auth/jwks'); // no Authorization header: public
      const wellKnownRes = await t.http().get('/.well-known/jwks.json');
      for (const r of [jwksRes, wellKnownRes]) {
        expect(r.status).toBe(200);
        expect(r.headers['content-type']).toMatch(/application\/json/);
        const keys = r.body.keys as JWK[];
        expect(Array.isArray(keys)).toBe(true);
        expect(keys.length).toBeGreaterThan(0);
        expect(keys.map((k) => k.kid)).toContain(header.kid);
        for (const key of keys) {
          expect(key).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256' });
          for (const privateMember of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) expect(key).not.toHaveProperty(privateMember);
        }
      }
      expect(wellKnownRes.body).toEqual(jwksRes.body);

      for (const jwks of [jwksRes.body, wellKnownRes.body] as JSONWebKeySet[]) {
        const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks), {
          issuer: t.config.jwtIssuer,
          audience: t.config.jwtAudience,
          algorithms: ['ES256'],
        });
        expect(protectedHeader.kid).toBe(header.kid);
        expect(payload.iss).toBe(t.config.jwtIssuer);
        expect(payload.aud === t.config.jwtAudience || (Array.isArray(payload.aud) && payload.aud.includes(t.config.jwtAudience))).toBe(true);
        expect(payload.sub).toMatch(/^key_/);
        expect(payload.org_id).toMatch(/^org_/);
        expect(payload.scope).toBe(res.body.scope);
        expect(typeof payload.jti).toBe('string');
        expect((payload.jti as string).length).toBeGreaterThanOrEqual(16);
        expect(typeof payload.iat).toBe('number');
        expect(Math.abs(payload.iat! - nowSec())).toBeLessThan(60);
        expect(payload.exp).toBe(payload.iat! + 86400);
      }
    });

    it('the bootstrap token works on a protected route (positive control)', async () => {
      const res = await getProtected(bootstrapToken);
      expect(res.status).toBe(200);
      expect(Array.isArray(res.body.data)).toBe(true);
    });
  });

  describe('2. scope narrowing', () => {
    it("scope: 'user:read' gives a token with exactly that scope, which is 403 AUTH_INSUFFICIENT_SCOPE on an apikey:manage route", async () => {
      const res = await exchange({ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY, scope: 'user:read' });
      expect(res.status).toBe(200);
      expect(res.body.scope).toBe('user:read');
      expect(decodeJwt(res.body.access_token as string).scope).toBe('user:read');

      const denied = await getProtected(res.body.access_token as string);
      expectError(denied, 403, 'AUTH_INSUFFICIENT_SCOPE');
      expect(JSON.stringify(denied.body.error.details)).toContain('apikey:manage');
    });

    it('a key holding only user:read cannot ask for user:write (403 AUTH_INSUFFICIENT_SCOPE) but gets user:read', async () => {
      const limited = await createKey('read-only-service', ['user:read']);
      expect(limited.body.scopes).toEqual(['user:read']);

      const beyond = await exchange({ grant_type: 'client_credentials', api_key: limited.key, scope: 'user:write' });
      expectError(beyond, 403, 'AUTH_INSUFFICIENT_SCOPE');
      expect(beyond.text).not.toContain(limited.key);

      const mixed = await exchange({ grant_type: 'client_credentials', api_key: limited.key, scope: 'user:read platform:admin' });
      expectError(mixed, 403, 'AUTH_INSUFFICIENT_SCOPE');

      const own = await exchange({ grant_type: 'client_credentials', api_key: limited.key });
      expect(own.status).toBe(200);
      expect(own.body.scope).toBe('user:read');
      expectError(await getProtected(own.body.access_token as string), 403, 'AUTH_INSUFFICIENT_SCOPE');
    });
  });

  describe('3. rejected bearer tokens (401)', () => {
    it('no Authorization header → 401 AUTH_TOKEN_MISSING', async () => {
      expectError(await t.http().get(PROTECTED_PATH), 401, 'AUTH_TOKEN_MISSING');
    });

    it('Bearer garbage → 401 AUTH_TOKEN_INVALID', async () => {
      expectError(await getProtected('garbage'), 401, 'AUTH_TOKEN_INVALID');
      expectError(await getProtected('a.b.c'), 401, 'AUTH_TOKEN_INVALID');
    });

    it('another scheme (Basic abc) → 401 AUTH_TOKEN_INVALID', async () => {
      expectError(await t.http().get(PROTECTED_PATH).set('Authorization', 'Basic abc'), 401, 'AUTH_TOKEN_INVALID');
      // The real token under the wrong scheme is no better.
      expectError(await t.http().get(PROTECTED_PATH).set('Authorization', `Basic ${bootstrapToken}`), 401, 'AUTH_TOKEN_INVALID');
    });

    it('a correctly signed token crafted with the real key is accepted (control for the forgeries below)', async () => {
      const crafted = await signWithRealKey(claimsLike(bootstrapToken));
      expect((await getProtected(crafted)).status).toBe(200);
    });

    it('alg: none (unsigned) → 401 AUTH_TOKEN_INVALID', async () => {
      const claims = claimsLike(bootstrapToken);
      const unsigned = `${b64json({ alg: 'none', typ: 'JWT' })}.${b64json(claims)}.`;
      expectError(await getProtected(unsigned), 401, 'AUTH_TOKEN_INVALID');
      // Even when it names our kid.
      const { kid } = decodeProtectedHeader(bootstrapToken);
      const withKid = `${b64json({ alg: 'none', typ: 'JWT', kid })}.${b64json(claims)}.`;
      expectError(await getProtected(withKid), 401, 'AUTH_TOKEN_INVALID');
    });

    it('HS256 signed with the public key as HMAC secret (key confusion), real kid → 401 AUTH_TOKEN_INVALID', async () => {
      const { kid } = decodeProtectedHeader(bootstrapToken);
      const jwks = (await t.http().get('/v2/auth/jwks')).body as JSONWebKeySet;
      const publicJwk = jwks.keys.find((k) => k.kid === kid)!;
      expect(publicJwk).toBeDefined();
      const pem = createPublicKey({ key: publicJwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string;
      const secrets: Array<string | Buffer> = [
        JSON.stringify(publicJwk),
        publicJwk.x!,
        Buffer.from(publicJwk.x!, 'base64url'),
        pem,
      ];
      const claims = claimsLike(bootstrapToken);
      for (const secret of secrets) {
        const forged = hs256({ alg: 'HS256', typ: 'JWT', kid }, claims, secret);
        expectError(await getProtected(forged), 401, 'AUTH_TOKEN_INVALID');
      }
    });

    it('a real token with one payload character changed (tampered) → 401 AUTH_TOKEN_INVALID', async () => {
      const [header, payload, signature] = bootstrapToken.split('.') as [string, string, string];
      const i = Math.floor(payload.length / 2);
      const flipped = payload[i] === 'A' ? 'B' : 'A';
      const tampered = `${header}.${payload.slice(0, i)}${flipped}${payload.slice(i + 1)}.${signature}`;
      expect(tampered).not.toBe(bootstrapToken);
      expectError(await getProtected(tampered), 401, 'AUTH_TOKEN_INVALID');

      // A meaningful edit: a user:read token whose scope claim is raised, signature kept.
      const narrow = await tokenFor(TEST_BOOTSTRAP_KEY, 'user:read');
      const [h, p, s] = narrow.split('.') as [string, string, string];
      const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
      const raised = `${h}.${b64json({ ...claims, scope: 'user:read apikey:manage' })}.${s}`;
      expectError(await getProtected(raised), 401, 'AUTH_TOKEN_INVALID');
      // And a token with its signature cut off.
      expectError(await getProtected(`${h}.${p}.`), 401, 'AUTH_TOKEN_INVALID');
    });

    it('correctly signed, but exp in the past → 401 AUTH_TOKEN_EXPIRED', async () => {
      const iat = nowSec() - 2 * 86400;
      const expired = await signWithRealKey(claimsLike(bootstrapToken, { iat, exp: iat + 86400 }));
      expectError(await getProtected(expired), 401, 'AUTH_TOKEN_EXPIRED');
    });

    it('correctly signed, wrong iss → 401 AUTH_TOKEN_INVALID', async () => {
      const token = await signWithRealKey(claimsLike(bootstrapToken, { iss: 'https://evil.example.com' }));
      expectError(await getProtected(token), 401, 'AUTH_TOKEN_INVALID');
    });

    it('correctly signed, wrong aud → 401 AUTH_TOKEN_INVALID', async () => {
      const token = await signWithRealKey(claimsLike(bootstrapToken, { aud: 'some-other-api' }));
      expectError(await getProtected(token), 401, 'AUTH_TOKEN_INVALID');
    });

    it('signed by a freshly generated ES256 key with an unknown kid (or with our kid) → 401 AUTH_TOKEN_INVALID', async () => {
      const { privateKey } = await generateKeyPair('ES256');
      const claims = claimsLike(bootstrapToken);
      const unknownKid = await new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid: 'k_20990101_deadbeefcafe', typ: 'JWT' })
        .sign(privateKey);
      expectError(await getProtected(unknownKid), 401, 'AUTH_TOKEN_INVALID');

      const { kid } = decodeProtectedHeader(bootstrapToken);
      const ourKid = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: kid!, typ: 'JWT' }).sign(privateKey);
      expectError(await getProtected(ourKid), 401, 'AUTH_TOKEN_INVALID');

      const noKid = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'JWT' }).sign(privateKey);
      expectError(await getProtected(noKid), 401, 'AUTH_TOKEN_INVALID');
    });

    it('a database failure while looking up an unknown kid is a 500 in the envelope, not a 401 for a good-looking token', async () => {
      const { privateKey } = await generateKeyPair('ES256');
      const claims = claimsLike(bootstrapToken);
      const token = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'k_20990101_0000dbdown00', typ: 'JWT' }).sign(privateKey);
      await new Promise((r) => setTimeout(r, 1100)); // past the once-a-second reload guard
      await t.sql('ALTER TABLE signing_keys RENAME TO signing_keys_away');
      try {
        expectError(await getProtected(token), 500, 'INTERNAL_ERROR');
      } finally {
        await t.sql('ALTER TABLE signing_keys_away RENAME TO signing_keys');
      }
      await new Promise((r) => setTimeout(r, 1100));
      expectError(await getProtected(token), 401, 'AUTH_TOKEN_INVALID');
      // The keys the app already holds kept working throughout.
      expect((await getProtected(bootstrapToken)).status).toBe(200);
    });
  });

  describe('4. revocation', () => {
    it('POST /auth/revoke revokes the bearer token: it is 401 AUTH_TOKEN_INVALID at once', async () => {
      const token = await tokenFor(TEST_BOOTSTRAP_KEY);
      expect((await getProtected(token)).status).toBe(200);
      const res = await t.http().post('/v2/auth/revoke').set('Authorization', `Bearer ${token}`).send({});
      expect(res.status).toBe(200);
      expectError(await getProtected(token), 401, 'AUTH_TOKEN_INVALID');
      // Revoking needs a live token too.
      expectError(await t.http().post('/v2/auth/revoke').set('Authorization', `Bearer ${token}`).send({}), 401, 'AUTH_TOKEN_INVALID');
    });

    it('POST /auth/revoke {token} revokes that other token; the caller keeps working', async () => {
      const caller = await tokenFor(TEST_BOOTSTRAP_KEY);
      const victim = await tokenFor(TEST_BOOTSTRAP_KEY, 'user:read');
      const res = await t.http().post('/v2/auth/revoke').set('Authorization', `Bearer ${caller}`).send({ token: victim });
      expect(res.status).toBe(200);
      expectError(await getProtected(victim), 401, 'AUTH_TOKEN_INVALID');
      expect((await getProtected(caller)).status).toBe(200);
    });

    it('POST /auth/revoke without a bearer token → 401 AUTH_TOKEN_MISSING', async () => {
      expectError(await t.http().post('/v2/auth/revoke').send({ token: bootstrapToken }), 401, 'AUTH_TOKEN_MISSING');
      expect((await getProtected(bootstrapToken)).status).toBe(200);
    });

    it("a token of another organization cannot be revoked through the body (it keeps working)", async () => {
      const created = await t
        .http()
        .post('/v2/admin/organizations')
        .set('Authorization', `Bearer ${bootstrapToken}`)
        .send({ name: 'Other Org', plan: 'professional' });
      expect(created.status).toBe(201);
      const otherToken = await tokenFor(created.body.api_key.key as string);
      expect(decodeJwt(otherToken).org_id).not.toBe(decodeJwt(bootstrapToken).org_id);

      const caller = await tokenFor(TEST_BOOTSTRAP_KEY);
      const res = await t.http().post('/v2/auth/revoke').set('Authorization', `Bearer ${caller}`).send({ token: otherToken });
      expect(res.status).toBe(200);
      expect((await getProtected(otherToken)).status).toBe(200);
    });
  });

  describe('5. refresh', () => {
    it('POST /auth/refresh returns a new working token (new jti, same subject and scope) and revokes the old one', async () => {
      const old = await tokenFor(TEST_BOOTSTRAP_KEY, 'user:read apikey:manage');
      const res = await t.http().post('/v2/auth/refresh').set('Authorization', `Bearer ${old}`).send({});
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ token_type: 'Bearer', expires_in: 86400 });
      expect(res.headers['cache-control']).toMatch(/no-store/);
      const fresh = res.body.access_token as string;
      const [oldClaims, newClaims] = [decodeJwt(old), decodeJwt(fresh)];
      expect(newClaims.jti).not.toBe(oldClaims.jti);
      expect(newClaims.sub).toBe(oldClaims.sub);
      expect(newClaims.org_id).toBe(oldClaims.org_id);
      expect((newClaims.scope as string).split(' ').sort()).toEqual(['apikey:manage', 'user:read']);
      expect(res.body.scope.split(' ').sort()).toEqual(['apikey:manage', 'user:read']);

      expect((await getProtected(fresh)).status).toBe(200);
      expectError(await getProtected(old), 401, 'AUTH_TOKEN_INVALID');
      // The old token cannot be refreshed again.
      expectError(await t.http().post('/v2/auth/refresh').set('Authorization', `Bearer ${old}`).send({}), 401, 'AUTH_TOKEN_INVALID');
    });
  });

  describe('6. deleted API keys', () => {
    it('DELETE /api-keys/{id} → 204; the key gets 401 AUTH_INVALID_CREDENTIALS and its earlier token 401 AUTH_TOKEN_INVALID at once', async () => {
      const created = await createKey('to-be-deleted');
      expect(created.id).toMatch(/^key_/);
      const token = await tokenFor(created.key);
      expect(decodeJwt(token).sub).toBe(created.id);
      expect((await getProtected(token)).status).toBe(200);

      const del = await t.http().delete(`/v2/api-keys/${created.id}`).set('Authorization', `Bearer ${bootstrapToken}`);
      expect(del.status).toBe(204);
      expect(del.text).toBe('');

      const again = await exchange({ grant_type: 'client_credentials', api_key: created.key });
      expectError(again, 401, 'AUTH_INVALID_CREDENTIALS');
      expectError(await getProtected(token), 401, 'AUTH_TOKEN_INVALID');

      const list = await getProtected(bootstrapToken);
      expect(list.status).toBe(200);
      expect((list.body.data as Array<{ id: string }>).map((k) => k.id)).not.toContain(created.id);

      // Deleting it twice: it no longer exists.
      const twice = await t.http().delete(`/v2/api-keys/${created.id}`).set('Authorization', `Bearer ${bootstrapToken}`);
      expectError(twice, 404, 'API_KEY_NOT_FOUND');
    });

    it('DELETE /api-keys/{unknown id} → 404 API_KEY_NOT_FOUND', async () => {
      const res = await t.http().delete('/v2/api-keys/key_doesnotexist000000').set('Authorization', `Bearer ${bootstrapToken}`);
      expectError(res, 404, 'API_KEY_NOT_FOUND');
    });
  });

  describe('7. POST /auth/token input errors', () => {
    it('an explicit null for a field is a 422 VALIDATION_ERROR, never a 500', async () => {
      const bodies = [
        { grant_type: 'password', organization_id: 'org_x', email: null, password: 'x' },
        { grant_type: 'password', organization_id: null, email: 'a@example.com', password: 'x' },
        { grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY, scope: null },
        { grant_type: 'client_credentials', api_key: null },
        { grant_type: null, api_key: TEST_BOOTSTRAP_KEY },
      ];
      for (const body of bodies) {
        const res = await exchange(body);
        expect([body, res.status]).toEqual([body, 422]);
        expect(res.body.error.code).toBe('VALIDATION_ERROR');
      }
    });

    it('a wrong key and a malformed key get the same 401 AUTH_INVALID_CREDENTIALS body (no enumeration)', async () => {
      const wrong = await exchange({ grant_type: 'client_credentials', api_key: unknownKey() });
      const malformed = await exchange({ grant_type: 'client_credentials', api_key: 'not-a-key' });
      const bootstrapTypo = await exchange({ grant_type: 'client_credentials', api_key: `${TEST_BOOTSTRAP_KEY.slice(0, -1)}2` });
      for (const res of [wrong, malformed, bootstrapTypo]) expectError(res, 401, 'AUTH_INVALID_CREDENTIALS');
      const shape = (res: Response) => {
        const { request_id: _r, timestamp: _t, ...rest } = res.body.error as Record<string, unknown>;
        return { keys: Object.keys(res.body).sort(), errorKeys: Object.keys(res.body.error).sort(), rest };
      };
      expect(shape(malformed)).toEqual(shape(wrong));
      expect(shape(bootstrapTypo)).toEqual(shape(wrong));
      expect(malformed.text).not.toContain('not-a-key');
    });

    it('missing api_key → 400 MISSING_REQUIRED_FIELD naming api_key', async () => {
      const res = await exchange({ grant_type: 'client_credentials' });
      expectError(res, 400, 'MISSING_REQUIRED_FIELD');
      expect(JSON.stringify(res.body.error.details)).toContain('api_key');
    });

    it('missing grant_type → 400 MISSING_REQUIRED_FIELD', async () => {
      expectError(await exchange({ api_key: TEST_BOOTSTRAP_KEY }), 400, 'MISSING_REQUIRED_FIELD');
    });

    it('unknown grant_type → 422 VALIDATION_ERROR', async () => {
      const res = await exchange({ grant_type: 'magic', api_key: TEST_BOOTSTRAP_KEY });
      expectError(res, 422, 'VALIDATION_ERROR');
      expect(res.body.error.details).toEqual(expect.arrayContaining([expect.objectContaining({ field: 'grant_type' })]));
    });

    it('an unknown extra body field → 422 VALIDATION_ERROR', async () => {
      const res = await exchange({ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY, admin: true });
      expectError(res, 422, 'VALIDATION_ERROR');
      expect(res.body.error.details).toEqual(expect.arrayContaining([expect.objectContaining({ field: 'admin' })]));
    });

    it('a text/plain body → 415 UNSUPPORTED_MEDIA_TYPE', async () => {
      const res = await t
        .http()
        .post(TOKEN_PATH)
        .set('Content-Type', 'text/plain')
        .send(`grant_type=client_credentials&api_key=${TEST_BOOTSTRAP_KEY}`);
      expectError(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
    });

    it('malformed JSON → 400 MALFORMED_REQUEST', async () => {
      const res = await t.http().post(TOKEN_PATH).set('Content-Type', 'application/json').send('{"grant_type": "client_credentials",');
      expectError(res, 400, 'MALFORMED_REQUEST');
    });

    it('a JSON array body → 400 MALFORMED_REQUEST', async () => {
      const res = await t
        .http()
        .post(TOKEN_PATH)
        .set('Content-Type', 'application/json')
        .send(JSON.stringify([{ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY }]));
      expectError(res, 400, 'MALFORMED_REQUEST');
    });

    it('a body over 1 MiB → 413 PAYLOAD_TOO_LARGE', async () => {
      const res = await exchange({ grant_type: 'client_credentials', api_key: 'x'.repeat(1024 * 1024 + 16) });
      expectError(res, 413, 'PAYLOAD_TOO_LARGE');
    });

    it('a string containing U+0000 → 422 VALIDATION_ERROR', async () => {
      const res = await exchange({ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY, scope: 'user:read\u0000' });
      expectError(res, 422, 'VALIDATION_ERROR');
      const key = await exchange({ grant_type: 'client_credentials', api_key: `${TEST_BOOTSTRAP_KEY}\u0000` });
      expectError(key, 422, 'VALIDATION_ERROR');
    });
  });

  describe('8. API key secrets never leak', () => {
    it('the secret appears in the creation response only: not in lists, error bodies, or any stored column', async () => {
      const created = await createKey('leak-check');
      const secret = created.key;
      expect(secret).toMatch(/^sk_(live|test)_[A-Za-z0-9]{22,}$/); // ≥ 128 bits of base62
      expect(Object.keys(created.body).sort()).toEqual(['created_at', 'id', 'key', 'name', 'scopes']);

      // The list shows a prefix, never the key.
      const list = await getProtected(bootstrapToken);
      expect(list.status).toBe(200);
      expect(list.text).not.toContain(secret);
      const listed = (list.body.data as Array<Record<string, unknown>>).find((k) => k.id === created.id);
      expect(listed).toBeDefined();
      expect(listed).not.toHaveProperty('key');
      expect(typeof listed!.prefix).toBe('string');
      expect(secret.startsWith(listed!.prefix as string)).toBe(true);
      expect((listed!.prefix as string).length).toBeLessThan(20);

      // The key works, and no error answer echoes it back.
      expect((await exchange({ grant_type: 'client_credentials', api_key: secret })).status).toBe(200);
      const auth = { Authorization: `Bearer ${bootstrapToken}` };
      const errors: Response[] = [
        await exchange({ grant_type: 'client_credentials', api_key: secret, extra: 'field' }),
        await exchange({ grant_type: 'magic', api_key: secret }),
        await exchange({ api_key: secret }),
        await exchange({ grant_type: 'client_credentials', api_key: `${secret}${'A'.repeat(200)}` }),
        await exchange({ grant_type: 'client_credentials', api_key: 12345, scope: secret }),
        await exchange({ grant_type: 'client_credentials', api_key: `${secret}\u0000` }),
        await exchange({ grant_type: 'client_credentials', api_key: secret, scope: 'platform:admin' }),
        await exchange({ grant_type: 'client_credentials', api_key: `${secret}x` }),
        await t.http().post(TOKEN_PATH).set('Content-Type', 'text/plain').send(secret),
        await t.http().post(TOKEN_PATH).set('Content-Type', 'application/json').send(`{"api_key": "${secret}"`),
        await t.http().get(PROTECTED_PATH).set('Authorization', `Bearer ${secret}`),
        await t.http().post('/v2/api-keys').set(auth).send({ name: 'x', key: secret }),
        await t.http().delete(`/v2/api-keys/${secret}`).set(auth),
        await t.http().get(`/v2/no-such-route/${secret}`).set(auth),
      ];
      for (const res of errors) {
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
        expect(res.body.error).toBeDefined();
        expect(res.text).not.toContain(secret);
        expect(JSON.stringify(res.headers)).not.toContain(secret);
      }

      // Stored only as a hash: no column of api_keys holds the secret (nor its plain SHA-256).
      const rows = await t.sql('SELECT * FROM api_keys');
      expect(rows.length).toBeGreaterThanOrEqual(2);
      const sha256 = createHash('sha256').update(secret).digest();
      for (const row of rows) {
        for (const [column, value] of Object.entries(row)) {
          const text = value instanceof Date ? value.toISOString() : JSON.stringify(value) ?? '';
          expect({ column, leaks: text.includes(secret) }).toEqual({ column, leaks: false });
          expect({ column, plainSha: text.includes(sha256.toString('hex')) || text.includes(sha256.toString('base64url')) })
            .toEqual({ column, plainSha: false });
        }
      }

      // Nor any other table of the database (audit trails, outbox, …).
      const tables = await t.sql<{ table_name: string }>(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`,
      );
      expect(tables.length).toBeGreaterThan(0);
      for (const { table_name } of tables) {
        const [hit] = await t.sql<{ n: number }>(
          `SELECT count(*)::int AS n FROM "${table_name.replace(/"/g, '""')}" x WHERE strpos(row_to_json(x)::text, $1) > 0`,
          [secret],
        );
        expect({ table: table_name, rows: hit!.n }).toEqual({ table: table_name, rows: 0 });
      }
    });
  });

  describe('9. per-IP brake (first app, default limit)', () => {
    it('many successful exchanges are never limited', async () => {
      for (let i = 0; i < 20; i++) {
        const res = await exchange({ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY });
        expect({ attempt: i, status: res.status }).toEqual({ attempt: i, status: 200 });
        expect(res.headers['retry-after']).toBeUndefined();
      }
      const parallel = await Promise.all(
        Array.from({ length: 10 }, () => exchange({ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY })),
      );
      expect(parallel.map((r) => r.status)).toEqual(Array(10).fill(200));
    });
  });
});

describe('Authentication: per-IP limit on failed POST /auth/token (AUTH_FAILURES_PER_IP=5)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp({ AUTH_FAILURES_PER_IP: '5' });
  });
  afterAll(async () => {
    await t?.close();
  });

  const exchange = (apiKey: string) => t.http().post(TOKEN_PATH).send({ grant_type: 'client_credentials', api_key: apiKey });

  it('5 failures → 401 each (successes in between do not count); the 6th attempt, even with the right key, → 429 RATE_LIMIT_EXCEEDED with Retry-After', async () => {
    const before = await exchange(TEST_BOOTSTRAP_KEY);
    expect(before.status).toBe(200);
    const earlierToken = before.body.access_token as string;

    const failures = [unknownKey(), 'not-a-key', unknownKey(), unknownKey(), unknownKey()];
    for (const [i, key] of failures.entries()) {
      const res = await exchange(key);
      expectError(res, 401, 'AUTH_INVALID_CREDENTIALS');
      expect(res.headers['retry-after']).toBeUndefined();
      if (i === 1) {
        // Successes are not counted (and do not reset the count either).
        for (let j = 0; j < 3; j++) expect((await exchange(TEST_BOOTSTRAP_KEY)).status).toBe(200);
      }
    }

    const blocked = await exchange(TEST_BOOTSTRAP_KEY);
    expectError(blocked, 429, 'RATE_LIMIT_EXCEEDED');
    const retryAfter = blocked.body.error.retry_after as number;
    expect(typeof retryAfter).toBe('number');
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(t.config.authFailureWindowSeconds);
    expect(blocked.headers['retry-after']).toBe(String(retryAfter));
    expect(blocked.body.access_token).toBeUndefined();

    const stillBlocked = await exchange(unknownKey());
    expectError(stillBlocked, 429, 'RATE_LIMIT_EXCEEDED');
    expect(Number(stillBlocked.headers['retry-after'])).toBeGreaterThan(0);

    // The brake is on obtaining tokens: a token issued earlier still works.
    expect((await t.http().get(PROTECTED_PATH).set('Authorization', `Bearer ${earlierToken}`)).status).toBe(200);
  });
});

describe('Authentication: password attempts sent all at once (AUTH_FAILURES_PER_IP=5)', () => {
  let t: TestApp;
  let orgId: string;
  const password = 'the right password';
  const emails: string[] = [];

  beforeAll(async () => {
    t = await createTestApp({ AUTH_FAILURES_PER_IP: '5' });
    const token = (await t.http().post(TOKEN_PATH).send({ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY })).body.access_token as string;
    for (let i = 0; i < 12; i++) {
      const res = await t.http().post('/v2/users').set('Authorization', `Bearer ${token}`).send({ email: `burst${i}@example.com`, first_name: 'B', last_name: String(i), password });
      emails.push(res.body.email as string);
    }
    orgId = (await t.sql<{ organization_id: string }>('SELECT organization_id FROM users LIMIT 1'))[0]!.organization_id;
  });
  afterAll(async () => {
    await t?.close();
  });

  it('right passwords sent all at once beyond the limit are refused for the moment, but never block the address afterwards', async () => {
    const burst = await Promise.all(
      Array.from({ length: 20 }, (_, i) => t.http().post(TOKEN_PATH).send({ grant_type: 'password', organization_id: orgId, email: emails[i % 12], password })),
    );
    for (const r of burst) expect([200, 429]).toContain(r.status);
    // Nothing was wrong, so nothing is held against the address.
    const later = await t.http().post(TOKEN_PATH).send({ grant_type: 'password', organization_id: orgId, email: emails[3], password });
    expect(later.status).toBe(200);
  });

  it('40 wrong passwords at once over 12 accounts from one address: at most 5 are checked, the rest are 429 unchecked; right ones are not counted', async () => {
    const good = await t.http().post(TOKEN_PATH).send({ grant_type: 'password', organization_id: orgId, email: emails[0], password });
    expect(good.status).toBe(200);
    const attempts = await Promise.all(
      Array.from({ length: 40 }, (_, i) => t.http().post(TOKEN_PATH).send({ grant_type: 'password', organization_id: orgId, email: emails[i % 12], password: `wrong ${i}` })),
    );
    const statuses = attempts.map((r) => r.status);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(5);
    expect(statuses.filter((s) => s === 401).length + statuses.filter((s) => s === 429).length).toBe(40);
    for (const r of attempts.filter((x) => x.status === 429)) expect(['RATE_LIMIT_EXCEEDED', 'ACCOUNT_LOCKED']).toContain(r.body.error.code);
    // The address is now blocked, even for a right password.
    const blocked = await t.http().post(TOKEN_PATH).send({ grant_type: 'password', organization_id: orgId, email: emails[11], password });
    expectError(blocked, 429, 'RATE_LIMIT_EXCEEDED');
  });
});
