import { Inject, Injectable } from '@nestjs/common';
import { AppException, AuthContext } from '@app/common';
import { APP_CONFIG, AppConfig } from '@app/config';
import { randomBytes } from 'node:crypto';
import { decodeProtectedHeader, errors, jwtVerify, SignJWT } from 'jose';
import { TokenDenylist } from './denylist/token-denylist.service';
import { SIGNING_ALGORITHM, SigningKeysService } from './signing-keys.service';

export const ACCESS_TOKEN_TTL_SECONDS = 86_400;
/** Verified tokens are remembered this long (by their exact text), saving the ES256 verification. */
const VERIFIED_CACHE_MS = 60_000;
const VERIFIED_CACHE_SIZE = 10_000;

export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
  refresh_token?: string;
}

interface TokenClaims {
  org_id: string;
  sid?: string;
  scope: string;
  sub: string;
  jti: string;
  iat: number;
  /** The issue time in milliseconds: a revocation and a token issued in the same second are told apart. */
  iat_ms?: number;
  exp: number;
}

/** Issues and verifies access tokens: ES256 JWTs with a kid, iss, aud, sub, org_id, scope, jti, iat, exp. */
@Injectable()
export class TokenService {
  private readonly verified = new Map<string, { claims: TokenClaims; until: number }>();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly signingKeys: SigningKeysService,
    private readonly denylist: TokenDenylist,
  ) {}

  /**
   * A new access token. `issuedAtMs` (default: now) is when the facts behind its scopes were read,
   * so that a revocation made after that read still catches the token (iat_ms, iat).
   */
  async issue(organizationId: string, subject: string, scopes: Iterable<string>, sessionId?: string, issuedAtMs?: number): Promise<TokenResponse> {
    const { kid, privateKey } = await this.signingKeys.signingKey();
    const scope = [...new Set(scopes)].join(' ');
    const now = Math.floor(Date.now() / 1000);
    const asOf = Math.min(issuedAtMs ?? Date.now(), Date.now());
    const token = await new SignJWT({ org_id: organizationId, scope, ...(sessionId ? { sid: sessionId } : {}), iat_ms: asOf })
      .setProtectedHeader({ alg: SIGNING_ALGORITHM, kid, typ: 'JWT' })
      .setIssuer(this.config.jwtIssuer)
      .setAudience(this.config.jwtAudience)
      .setSubject(subject)
      .setJti(randomBytes(16).toString('base64url'))
      .setIssuedAt(Math.floor(asOf / 1000))
      .setExpirationTime(now + ACCESS_TOKEN_TTL_SECONDS)
      .sign(privateKey);
    return { access_token: token, token_type: 'Bearer', expires_in: ACCESS_TOKEN_TTL_SECONDS, scope };
  }

  /** Verifies signature, algorithm, kid, iss, aud, expiry and revocation; answers the §3 codes. */
  async verify(token: string): Promise<AuthContext> {
    const claims = await this.verifySignatureAndClaims(token);
    // Revocation is checked on every request, cached signature or not.
    if (await this.denylist.isRevoked(claims.jti, claims.sub, issuedAtMs(claims), claims.sid)) {
      throw new AppException('AUTH_TOKEN_INVALID', 'The access token has been revoked');
    }
    return {
      organizationId: claims.org_id,
      subject: claims.sub,
      subjectType: claims.sub.startsWith('user_') ? 'user' : 'api_key',
      scopes: new Set(claims.scope.split(' ').filter(Boolean)),
      tokenId: claims.jti,
      sessionId: claims.sid,
      issuedAt: claims.iat,
      expiresAt: claims.exp,
    };
  }

  private async verifySignatureAndClaims(token: string): Promise<TokenClaims> {
    const now = Date.now();
    const cached = this.verified.get(token);
    if (cached && cached.until > now) return cached.claims;
    if (cached && cached.claims.exp * 1000 <= now) throw new AppException('AUTH_TOKEN_EXPIRED', 'The access token has expired');
    const invalid = () => new AppException('AUTH_TOKEN_INVALID', 'The access token is invalid');
    let kid: string;
    try {
      const header = decodeProtectedHeader(token);
      if (header.alg !== SIGNING_ALGORITHM || typeof header.kid !== 'string') throw invalid();
      kid = header.kid;
    } catch {
      throw invalid();
    }
    // Outside the try: a database failure while looking the key up is a server error (500), not
    // a bad token.
    const key = await this.signingKeys.verificationKey(kid);
    if (!key) throw invalid();
    let claims: TokenClaims;
    try {
      const { payload } = await jwtVerify(token, key, {
        algorithms: [SIGNING_ALGORITHM],
        issuer: this.config.jwtIssuer,
        audience: this.config.jwtAudience,
        requiredClaims: ['sub', 'jti', 'iat', 'exp'],
      });
      claims = payload as unknown as TokenClaims;
    } catch (error) {
      if (error instanceof errors.JWTExpired) throw new AppException('AUTH_TOKEN_EXPIRED', 'The access token has expired');
      throw invalid();
    }
    if (typeof claims.org_id !== 'string' || typeof claims.scope !== 'string') throw invalid();
    if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, { claims, until: Math.min(now + VERIFIED_CACHE_MS, claims.exp * 1000) });
    return claims;
  }

  async revoke(auth: Pick<AuthContext, 'tokenId' | 'organizationId' | 'expiresAt'>): Promise<void> {
    await this.denylist.revokeToken(auth.tokenId, auth.organizationId, auth.expiresAt);
  }

  /** Revokes the token; false when another request had revoked it already. */
  revokeOnce(auth: Pick<AuthContext, 'tokenId' | 'organizationId' | 'expiresAt'>): Promise<boolean> {
    return this.denylist.revokeTokenOnce(auth.tokenId, auth.organizationId, auth.expiresAt);
  }
}

/** When the token was issued, in ms: `iat_ms` when it agrees with `iat` (our tokens), else `iat`'s second. */
function issuedAtMs(claims: TokenClaims): number {
  const ms = claims.iat_ms;
  return typeof ms === 'number' && Math.floor(ms / 1000) === claims.iat ? ms : claims.iat * 1000;
}
