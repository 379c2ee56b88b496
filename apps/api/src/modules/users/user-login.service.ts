import { Injectable } from '@nestjs/common';
import { AppException } from '@app/common';
import { MasterKeyService } from '@app/config';
import { CounterStore, TransactionRunner } from '@app/database';
import { EventPublisher, newId } from '@app/events';
import { randomBytes } from 'node:crypto';
import { EntityManager } from 'typeorm';
import { CredentialTokensRepository } from './credential-tokens.repository';
import { TokenDenylist } from '../auth/denylist/token-denylist.service';
import { PasswordHasher } from './password-hasher';
import { userSnapshot } from './users.mapper';
import { UserRecord, UsersRepository } from './users.repository';
import { UsersService } from './users.service';

const FAILURE_WINDOW_MS = 15 * 60_000;
const FREE_FAILURES = 5;
const MAX_LOCK_SECONDS = 900;
/** How long a sign-in's "being checked" mark lives if its process dies before clearing it. */
const CHECKING_TTL_MS = 60_000;
const REFRESH_TTL_MS = 30 * 86_400_000;
const REFRESH_PURPOSE = 'refresh-token-hash';

export interface LoggedInUser {
  user: UserRecord;
  permissions: string[];
  sessionId: string;
  refreshToken: string;
  /**
   * When the roles behind `permissions` were read (ms): the access token's issue time, so that a
   * revocation made after that read (a role taken away meanwhile) still catches the token.
   */
  rolesReadAt: number;
}

/**
 * End-user sign-in: password checks with per-account lockout (growing delays of 1 s, 2 s, 4 s …
 * up to 15 min after 5 failures within 15 min, never permanent), and refresh tokens rotated on every
 * use, where presenting an already-used one revokes its whole session.
 */
@Injectable()
export class UserLoginService {
  constructor(
    private readonly users: UsersRepository,
    private readonly counters: CounterStore,
    private readonly transactions: TransactionRunner,
    private readonly events: EventPublisher,
    private readonly denylist: TokenDenylist,
    private readonly masterKey: MasterKeyService,
    private readonly tokens: CredentialTokensRepository,
    private readonly quota: UsersService,
    private readonly passwords: PasswordHasher,
  ) {}

  async loginWithPassword(organizationId: string, email: string, password: string, context: { ip: string; userAgent?: string }): Promise<LoggedInUser> {
    const account = `${organizationId}:${await this.accountKey(email)}`;
    const lock = await this.counters.get(`lock:${account}`);
    if (lock) {
      const retryAfter = Math.max(1, Math.ceil((lock.resetAt - Date.now()) / 1000));
      throw new AppException('ACCOUNT_LOCKED', 'Too many failed sign-in attempts; try again later', { retryAfter });
    }
    // Attempts sent all at once must not all be checked: at most as many are checked at a time as
    // failures remain before the lock (at least one), claimed atomically; the others are refused
    // unchecked. A failure is counted before its claim is given back.
    if (!(await this.counters.claim(`try:${account}`, `fail:${account}`, `lock:${account}`, FREE_FAILURES, CHECKING_TTL_MS))) {
      throw new AppException('ACCOUNT_LOCKED', 'Too many sign-in attempts at once for this account; try again later', { retryAfter: 1 });
    }
    let user: UserRecord | undefined;
    let rolesReadAt = 0;
    try {
      rolesReadAt = Date.now();
      user = /^org_[a-z0-9]+$/.test(organizationId) ? await this.users.findByEmail(organizationId, email) : undefined;
      const ok = await this.passwords.verify(user?.password_hash ?? null, password);
      if (!user || !ok || user.status !== 'active' || user.deleted_at) {
        const failures = await this.counters.increment(`fail:${account}`, FAILURE_WINDOW_MS);
        // Each failure past the free ones locks for longer (1 s, 2 s, 4 s … 15 min); a lock is only ever lengthened.
        if (failures.count >= FREE_FAILURES) {
          await this.counters.extend(`lock:${account}`, Math.min(MAX_LOCK_SECONDS, 2 ** (failures.count - FREE_FAILURES)) * 1000);
        }
        throw new AppException('AUTH_INVALID_CREDENTIALS', 'Invalid credentials');
      }
    } finally {
      await this.counters.release(`try:${account}`);
    }
    await this.counters.reset(`fail:${account}`);
    // A hash made with other parameters (an older profile, or PASSWORD_HASH_MEMORY_KIB changed) is
    // replaced now, while the password is at hand; the sign-in statement stores it.
    const rehashed = this.passwords.needsRehash(user.password_hash!) ? await this.passwords.hash(password) : undefined;
    // A first sign-in of the month makes the user active: refused when the plan's limit is reached.
    return this.quota.withActiveUsersCapacity(organizationId, user.id, (capacity, manager) => {
      if (capacity < 1) throw UsersService.quotaExceeded();
      return this.startSession(user, context, 'password', rehashed, manager, rolesReadAt);
    });
  }

  /**
   * The email as the sign-in finds its account: trimmed and lower-cased by PostgreSQL, as
   * findByEmail compares it. A lockout keyed by JavaScript's lower case could be dodged: "İris@…" is
   * "i̇ris@…" to JavaScript and "iris@…" to PostgreSQL, so every spelling had failures of its own;
   * and under a Turkish collation even ASCII differs ("I" is "ı"). One short round trip, next to a
   * password hash's milliseconds.
   */
  private async accountKey(email: string): Promise<string> {
    return (await this.users.lowerEmails([email.trim()]))[0]!;
  }

  /**
   * Opens a session for a user read with their roles (UsersRepository.findByEmail): one statement
   * records the login, the activity, the refresh token and the user.login event.
   */
  async startSession(
    user: UserRecord,
    context: { ip: string; userAgent?: string },
    method: 'password' | 'sso',
    newPasswordHash?: string,
    manager?: EntityManager,
    rolesReadAt = Date.now(),
  ): Promise<LoggedInUser> {
    const sessionId = newId('ses');
    const refreshToken = `rt_${randomBytes(32).toString('base64url')}`;
    const at = new Date();
    const event = this.events.draft(user.organization_id, 'user.login', { user: userSnapshot(user), method, ip_address: context.ip, user_agent: context.userAgent }, at);
    const updated = await this.users.recordSignIn(
      user.organization_id,
      user.id,
      at,
      { id: newId('rt'), hash: this.masterKey.hmac(REFRESH_PURPOSE, refreshToken), sessionId, expiresAt: new Date(at.getTime() + REFRESH_TTL_MS) },
      event,
      newPasswordHash,
      manager,
    );
    if (!updated) throw new AppException('AUTH_INVALID_CREDENTIALS', 'Invalid credentials');
    this.transactions.committed();
    const signedIn: UserRecord = { ...updated, roles: user.roles };
    return { user: signedIn, permissions: this.permissionsOf(signedIn), sessionId, refreshToken, rolesReadAt };
  }

  /**
   * The scopes a user's renewed access token gets (POST /auth/refresh): their roles' permissions
   * now, not the ones in the token presented, so a demoted user is not renewed into their old
   * rights. The user must still be active and the session alive (a live refresh token: not revoked,
   * not expired), so renewals end with the session. Otherwise 401 AUTH_TOKEN_INVALID.
   */
  async currentScopes(organizationId: string, userId: string, sessionId: string | undefined): Promise<{ scopes: string[]; rolesReadAt: number }> {
    const ended = () => new AppException('AUTH_TOKEN_INVALID', 'The session has ended; sign in again');
    if (!sessionId) throw ended();
    const rolesReadAt = Date.now();
    const [user, live] = await Promise.all([this.users.findDetailed(organizationId, userId), this.tokens.sessionIsLive(organizationId, sessionId)]);
    if (!user || user.status !== 'active' || user.deleted_at || !live) throw ended();
    return { scopes: this.permissionsOf(user), rolesReadAt };
  }

  /**
   * Ends the session of a refresh token of this organization (with `owner`, only one of that user's):
   * its refresh tokens and the access tokens issued in it stop working at once. An unknown, foreign
   * or spent token is left alone
   * (RFC 7009: nothing to revoke, and nothing to tell).
   */
  async revokeRefreshToken(organizationId: string, presented: string, owner?: string): Promise<void> {
    const hash = this.masterKey.hmac(REFRESH_PURPOSE, presented);
    const sessionId = await this.transactions.run(async (manager) => {
      const row = await this.tokens.lockRefreshToken(manager, hash);
      if (!row || row.organization_id !== organizationId || (owner !== undefined && row.user_id !== owner)) return undefined;
      await this.tokens.revokeSession(manager, row.organization_id, row.session_id);
      return row.session_id;
    });
    if (sessionId) await this.denylist.revokeSubject(sessionId, organizationId);
  }

  /** Rotates a refresh token. Reuse of a spent one revokes the session, its refresh and access tokens. */
  async rotate(presented: string): Promise<LoggedInUser> {
    const hash = this.masterKey.hmac(REFRESH_PURPOSE, presented);
    const invalid = () => new AppException('AUTH_TOKEN_INVALID', 'The refresh token is invalid');
    const result = await this.transactions.run(async (manager) => {
      const row = await this.tokens.lockRefreshToken(manager, hash);
      if (!row || row.revoked_at || row.expires_at.getTime() <= Date.now()) throw invalid();
      if (row.used_at) {
        await this.tokens.revokeSession(manager, row.organization_id, row.session_id);
        return { reused: row };
      }
      const rolesReadAt = Date.now();
      const user = await this.users.findDetailed(row.organization_id, row.user_id, manager);
      if (!user || user.status !== 'active' || user.deleted_at) throw invalid();
      await this.tokens.markRefreshTokenUsed(manager, row.id);
      const refreshToken = await this.createRefreshToken(manager, user, row.session_id);
      return { login: { user, permissions: this.permissionsOf(user), sessionId: row.session_id, refreshToken, rolesReadAt } };
    });
    if (result.reused) {
      // After the commit: the denylist writes through its own connection.
      await this.denylist.revokeSubject(result.reused.session_id, result.reused.organization_id);
      throw new AppException('AUTH_TOKEN_INVALID', 'The refresh token was already used; the session has been revoked');
    }
    return result.login!;
  }

  private async createRefreshToken(manager: EntityManager, user: UserRecord, sessionId: string): Promise<string> {
    const token = `rt_${randomBytes(32).toString('base64url')}`;
    await this.tokens.insertRefreshToken(manager, {
      id: newId('rt'),
      hash: this.masterKey.hmac(REFRESH_PURPOSE, token),
      organizationId: user.organization_id,
      userId: user.id,
      sessionId,
      expiresAt: new Date(Date.now() + REFRESH_TTL_MS),
    });
    return token;
  }

  /** The token's scopes: the user's roles' permissions, never `platform:admin` (an operator's scope, not a role's). */
  private permissionsOf(user: UserRecord): string[] {
    return [...new Set((user.roles ?? []).flatMap((r) => r.permissions))].filter((p) => p !== 'platform:admin').sort();
  }
}
