import { Inject, Injectable } from '@nestjs/common';
import { AppException, AuthContext } from '@app/common';
import { APP_CONFIG, AppConfig } from '@app/config';
import { CounterStore } from '@app/database';
import { ApiKeysService } from '../api-keys/api-keys.service';
import { LoggedInUser, UserLoginService } from '../users/user-login.service';
import { TokenRequestDto } from './dto/token-request.dto';
import { TokenResponse, TokenService } from './token.service';

/**
 * The grants of POST /auth/token, and the per-IP brake on failed attempts: failures count,
 * successes do not, and past the limit every attempt from that IP is 429 until the window ends.
 */
@Injectable()
export class AuthService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly apiKeys: ApiKeysService,
    private readonly tokens: TokenService,
    private readonly counters: CounterStore,
    private readonly logins: UserLoginService,
  ) {}

  async exchange(body: TokenRequestDto, ip: string, userAgent?: string): Promise<TokenResponse> {
    await this.assertIpNotBlocked(ip);
    try {
      switch (body.grant_type) {
        case 'client_credentials':
          return await this.clientCredentials(body);
        case 'password': {
          const { organization_id, email, password } = requireFields(body, ['organization_id', 'email', 'password'], 'password');
          return await this.passwordAttempt(ip, () => this.logins.loginWithPassword(organization_id, email, password, { ip, userAgent }));
        }
        case 'refresh_token': {
          const { refresh_token } = requireFields(body, ['refresh_token'], 'refresh_token');
          return await this.endUserTokens(await this.logins.rotate(refresh_token));
        }
      }
    } catch (error) {
      const counted = body.grant_type === 'password'; // passwordAttempt counted it already
      if (!counted && error instanceof AppException && error.code === 'AUTH_INVALID_CREDENTIALS') await this.recordFailure(ip);
      throw error;
    }
  }

  /**
   * A password sign-in counts as a failure of its IP before the password is checked, and is taken
   * back unless the credentials were wrong: attempts sent all at once are stopped at the limit
   * instead of all being checked (a guessable secret, and argon2id's cost, make that matter here;
   * API keys and refresh tokens are too long to guess and are counted after the fact).
   */
  private async passwordAttempt(ip: string, login: () => Promise<LoggedInUser>): Promise<TokenResponse> {
    const window = this.config.authFailureWindowSeconds * 1000;
    const state = await this.counters.increment(`authfail:${ip}`, window);
    if (state.count > this.config.authFailuresPerIp) {
      // Refused unchecked: not a failure, so it gives its count back (only wrong passwords block an address).
      await this.counters.increment(`authfail:${ip}`, window, -1);
      throw this.ipBlocked(state.resetAt);
    }
    try {
      const tokens = await this.endUserTokens(await login());
      await this.counters.increment(`authfail:${ip}`, window, -1);
      return tokens;
    } catch (error) {
      if (!(error instanceof AppException && error.code === 'AUTH_INVALID_CREDENTIALS')) await this.counters.increment(`authfail:${ip}`, window, -1);
      throw error;
    }
  }

  /** An end user's access token (scopes: the union of their roles' permissions) and refresh token. */
  async endUserTokens(login: LoggedInUser): Promise<TokenResponse> {
    const issued = await this.tokens.issue(login.user.organization_id, login.user.id, login.permissions, login.sessionId, login.rolesReadAt);
    return { ...issued, refresh_token: login.refreshToken };
  }

  /**
   * A new token for the bearer, which is revoked. An API key's token keeps its scopes (a key's
   * scopes never change; a deleted key's tokens are already refused). An end user's gets their
   * roles' permissions as they are now, and only while their session lives.
   */
  async refresh(auth: AuthContext): Promise<TokenResponse> {
    const current = auth.subjectType === 'user' ? await this.logins.currentScopes(auth.organizationId, auth.subject, auth.sessionId) : undefined;
    // The presented token is spent first, once: of concurrent refreshes with it, one gets a new token.
    if (!(await this.tokens.revokeOnce(auth))) throw new AppException('AUTH_TOKEN_INVALID', 'The token has been revoked');
    return this.tokens.issue(auth.organizationId, auth.subject, current?.scopes ?? auth.scopes, auth.sessionId, current?.rolesReadAt);
  }

  /**
   * Revokes the bearer token, or another token of the same organization given in the body: an
   * access token, or a refresh token (`rt_…`), which ends its whole session (RFC 7009 §2.1: the
   * session's refresh tokens and the access tokens issued in it stop working).
   */
  async revoke(auth: AuthContext, token: string | undefined): Promise<void> {
    if (!token) return this.tokens.revoke(auth);
    // An end user revokes only their own tokens; the organization's API-key tokens, any of its tokens.
    const owner = auth.subjectType === 'user' ? auth.subject : undefined;
    if (token.startsWith('rt_')) return this.logins.revokeRefreshToken(auth.organizationId, token, owner);
    let target: AuthContext;
    try {
      target = await this.tokens.verify(token);
    } catch {
      return; // RFC 7009: an invalid, expired or already revoked token needs no revoking.
    }
    if (target.organizationId === auth.organizationId && (owner === undefined || target.subject === owner)) await this.tokens.revoke(target);
  }

  private async clientCredentials(body: TokenRequestDto): Promise<TokenResponse> {
    const { api_key } = requireFields(body, ['api_key'], 'client_credentials');
    const key = await this.apiKeys.authenticate(api_key);
    if (!key) throw new AppException('AUTH_INVALID_CREDENTIALS', 'Invalid credentials');
    let scopes = key.scopes;
    if (body.scope !== undefined) {
      const wanted = body.scope.split(/[\s,]+/).filter(Boolean);
      const beyond = wanted.filter((s) => !key.scopes.includes(s));
      if (beyond.length > 0) {
        throw new AppException('AUTH_INSUFFICIENT_SCOPE', 'The API key does not have every requested scope', {
          details: { missing_scopes: beyond },
        });
      }
      scopes = wanted;
    }
    return this.tokens.issue(key.organizationId, key.id, scopes);
  }

  private async assertIpNotBlocked(ip: string): Promise<void> {
    const state = await this.counters.get(`authfail:${ip}`);
    if (state && state.count >= this.config.authFailuresPerIp) throw this.ipBlocked(state.resetAt);
  }

  private ipBlocked(resetAt: number): AppException {
    const retryAfter = Math.max(1, Math.ceil((resetAt - Date.now()) / 1000));
    return new AppException('RATE_LIMIT_EXCEEDED', 'Too many failed authentication attempts from this address', { retryAfter });
  }

  private async recordFailure(ip: string): Promise<void> {
    await this.counters.increment(`authfail:${ip}`, this.config.authFailureWindowSeconds * 1000);
  }
}

function requireFields<K extends keyof TokenRequestDto>(body: TokenRequestDto, fields: K[], grant: string): Required<Pick<TokenRequestDto, K>> {
  const missing = fields.filter((f) => body[f] === undefined || body[f] === '');
  if (missing.length > 0) {
    throw new AppException('MISSING_REQUIRED_FIELD', 'Required fields are missing', {
      details: missing.map((f) => ({ field: f, issue: `Required for grant_type ${grant}`, code: 'REQUIRED' })),
    });
  }
  return body as unknown as Required<Pick<TokenRequestDto, K>>;
}
