import { bootstrapToken, createTestApp, TestApp } from '@app/testing';
import { CredentialTokensCleanup } from '../apps/api/src/modules/users/credential-tokens-cleanup.service';
import { CredentialTokensRepository } from '../apps/api/src/modules/users/credential-tokens.repository';

/**
 * Refresh tokens end with the sessions they belong to, atomically with the change that ends them,
 * and expired tokens do not pile up (CONTRACT §4). Everything goes through HTTP; the database is
 * read to check what the answers claim.
 */
describe('Credential tokens: revoked with the status change, deleted a day after expiry', () => {
  let t: TestApp;
  let token: string;
  let orgId: string;
  const PASSWORD = 'Correct-Horse-42';
  const auth = () => ({ Authorization: `Bearer ${token}` });

  const newUser = async (name: string) => {
    const res = await t.http().post('/v2/users').set(auth()).send({ email: `${name}@tokens.example`, first_name: name, last_name: 'Tokens', password: PASSWORD });
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 201 });
    return res.body as { id: string; email: string };
  };
  const signIn = async (email: string) => {
    const res = await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: orgId, email, password: PASSWORD });
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 200 });
    return res.body as { access_token: string; refresh_token: string };
  };
  const refresh = (refreshToken: string) => t.http().post('/v2/auth/token').send({ grant_type: 'refresh_token', refresh_token: refreshToken });
  const liveTokens = async (userId: string) =>
    (await t.sql<{ n: number }>('SELECT count(*)::int AS n FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL AND used_at IS NULL', [userId]))[0]!.n;

  beforeAll(async () => {
    t = await createTestApp();
    token = await bootstrapToken(t);
    const probe = await newUser('probe');
    orgId = (await t.sql<{ organization_id: string }>('SELECT organization_id FROM users WHERE id = $1', [probe.id]))[0]!.organization_id;
  });
  afterAll(async () => {
    await t.close();
  });
  afterEach(() => {
    jest.restoreAllMocks();
  });

  it('suspending revokes every refresh token in the update itself: a failure after the commit cannot leave a session to come back', async () => {
    const user = await newUser('sam');
    const sessions = [await signIn(user.email), await signIn(user.email)];
    expect(await liveTokens(user.id)).toBe(2);
    // Whatever runs after the update's statement fails, as if the process died right after the commit.
    const afterCommit = jest.spyOn(CredentialTokensRepository.prototype, 'revokeUserRefreshTokens').mockRejectedValue(new Error('process died'));
    const suspended = await t.http().put(`/v2/users/${user.id}`).set(auth()).send({ status: 'suspended' });
    expect({ status: suspended.status, body: suspended.body }).toMatchObject({ status: 200, body: { status: 'suspended' } });
    expect(afterCommit).not.toHaveBeenCalled();
    expect(await liveTokens(user.id)).toBe(0);
    afterCommit.mockRestore();

    // Reactivated, the user signs in again; the old sessions stay ended.
    await t.http().patch(`/v2/users/${user.id}`).set(auth()).send({ status: 'active' }).expect(200);
    for (const s of sessions) {
      const res = await refresh(s.refresh_token);
      expect({ status: res.status, code: res.body.error?.code }).toMatchObject({ status: 401 });
    }
    const fresh = await signIn(user.email);
    expect((await refresh(fresh.refresh_token)).status).toBe(200);

    // Other changes leave the sessions alone.
    await t.http().patch(`/v2/users/${user.id}`).set(auth()).send({ first_name: 'Samuel' }).expect(200);
    expect(await liveTokens(user.id)).toBe(1);
  });

  it('with a role change the status and the revocation share one transaction: both happen, or neither', async () => {
    const user = await newUser('rae');
    const session = await signIn(user.email);
    const failing = jest.spyOn(CredentialTokensRepository.prototype, 'revokeUserRefreshTokens').mockRejectedValueOnce(new Error('database went away'));
    const failed = await t.http().put(`/v2/users/${user.id}`).set(auth()).send({ status: 'inactive', role: 'moderator' });
    expect(failed.status).toBeGreaterThanOrEqual(500);
    expect(failing).toHaveBeenCalledTimes(1);
    // Nothing was written: the user is as before and their session works.
    const [row] = await t.sql<{ status: string; role: string }>('SELECT u.status, r.name AS role FROM users u JOIN roles r ON r.id = u.role_id WHERE u.id = $1', [user.id]);
    expect(row).toEqual({ status: 'active', role: 'user' });
    expect(await liveTokens(user.id)).toBe(1);

    const done = await t.http().put(`/v2/users/${user.id}`).set(auth()).send({ status: 'inactive', role: 'moderator' });
    expect({ status: done.status, body: done.body }).toMatchObject({ status: 200, body: { status: 'inactive', role: 'moderator' } });
    expect(await liveTokens(user.id)).toBe(0);
    expect((await refresh(session.refresh_token)).status).toBe(401);
  });

  it('expired refresh tokens and mailed tokens are deleted a day after they expire; live and recently expired ones stay', async () => {
    const user = await newUser('eli');
    const [old, recent, live] = [await signIn(user.email), await signIn(user.email), await signIn(user.email)];
    const idOf = async (refreshToken: string) => {
      const rows = await t.sql<{ id: string; token_hash: string }>('SELECT id, token_hash FROM refresh_tokens WHERE user_id = $1 ORDER BY created_at', [user.id]);
      return rows.map((r) => r.id)[[old, recent, live].findIndex((s) => s.refresh_token === refreshToken)]!;
    };
    const [oldId, recentId, liveId] = [await idOf(old.refresh_token), await idOf(recent.refresh_token), await idOf(live.refresh_token)];
    await t.sql(`UPDATE refresh_tokens SET expires_at = now() - interval '2 days' WHERE id = $1`, [oldId]);
    await t.sql(`UPDATE refresh_tokens SET expires_at = now() - interval '1 hour' WHERE id = $1`, [recentId]);
    // A mailed token (email verification) of the same user, long expired, and a fresh one.
    await t.http().post(`/v2/users/${user.id}/verification-email`).set(auth()).send({});
    await t.http().post(`/v2/users/${user.id}/verification-email`).set(auth()).send({});
    const mailed = await t.sql<{ id: string }>('SELECT id FROM email_tokens WHERE user_id = $1 ORDER BY created_at', [user.id]);
    expect(mailed.length).toBeGreaterThanOrEqual(2);
    await t.sql(`UPDATE email_tokens SET expires_at = now() - interval '3 days' WHERE id = $1`, [mailed[0]!.id]);

    await t.app.get(CredentialTokensCleanup).run();

    const left = (await t.sql<{ id: string }>('SELECT id FROM refresh_tokens WHERE user_id = $1', [user.id])).map((r) => r.id).sort();
    expect(left).toEqual([recentId, liveId].sort());
    const mailedLeft = (await t.sql<{ id: string }>('SELECT id FROM email_tokens WHERE user_id = $1', [user.id])).map((r) => r.id);
    expect(mailedLeft).not.toContain(mailed[0]!.id);
    expect(mailedLeft).toEqual(expect.arrayContaining(mailed.slice(1).map((m) => m.id)));
    // The live session still refreshes; the deleted one is simply unknown.
    expect((await refresh(live.refresh_token)).status).toBe(200);
    expect((await refresh(old.refresh_token)).status).toBe(401);
  });
});
