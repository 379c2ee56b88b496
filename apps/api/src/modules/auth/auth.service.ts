import { Inject, Injectable } from '@nestjs/common';
import { AppException, AuthContext } from '@app/common';
import { APP_CONFIG, AppConfig } from '@app/config';
import { CounterStore } from '@app/database';
import { ApiKeysService } from '../api-keys/api-keys.service';
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
  ) {}

  async exchange(body: TokenRequestDto, ip: string): Promise<TokenResponse> {
    await this.assertIpNotBlocked(ip);
    try {
      switch (body.grant_type) {
        case 'client_credentials':
          return await this.clientCredentials(body);
      }
    } catch (error) {
      if (error instanceof AppException && error.code === 'AUTH_INVALID_CREDENTIALS') await this.recordFailure(ip);
      throw error;
    }
  }

  async refresh(auth: AuthContext): Promise<TokenResponse> {
    const issued = await this.tokens.issue(auth.organizationId, auth.subject, auth.scopes);
    await this.tokens.revoke(auth);
    return issued;
  }

  /** Revokes the bearer token, or another token of the same organization given in the body. */
  async revoke(auth: AuthContext, token: string | undefined): Promise<void> {
    if (!token) return this.tokens.revoke(auth);
    let target: AuthContext;
    try {
      target = await this.tokens.verify(token);
    } catch {
      return; // RFC 7009: an invalid, expired or already revoked token needs no revoking.
    }
    if (target.organizationId === auth.organizationId) await this.tokens.revoke(target);
  }

  private async clientCredentials(body: TokenRequestDto): Promise<TokenResponse> {
    if (!body.api_key) {
      throw new AppException('MISSING_REQUIRED_FIELD', 'Required fields are missing', {
        details: [{ field: 'api_key', issue: 'Required for grant_type client_credentials', code: 'REQUIRED' }],
      });
    }
    const key = await this.apiKeys.authenticate(body.api_key);
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
    if (state && state.count >= this.config.authFailuresPerIp) {
      const retryAfter = Math.max(1, Math.ceil((state.resetAt - Date.now()) / 1000));
      throw new AppException('RATE_LIMIT_EXCEEDED', 'Too many failed authentication attempts from this address', {
        retryAfter,
      });
    }
  }

  private async recordFailure(ip: string): Promise<void> {
    await this.counters.increment(`authfail:${ip}`, this.config.authFailureWindowSeconds * 1000);
  }
}
