import { Inject, Injectable } from '@nestjs/common';
import { AppException } from '@app/common';
import { APP_CONFIG, AppConfig, MasterKeyService } from '@app/config';
import { TransactionRunner } from '@app/database';
import { EventPublisher, newId } from '@app/events';
import { randomBytes } from 'node:crypto';
import { TokenDenylist } from '../auth/denylist/token-denylist.service';
import { MAIL_LINK_PURPOSE } from '../mail/mail.listener';
import { EntityManager } from 'typeorm';
import { CredentialTokensRepository, EmailTokenRow } from './credential-tokens.repository';
import { PasswordHasher } from './password-hasher';
import { userSnapshot } from './users.mapper';
import { UserRecord, UsersRepository } from './users.repository';
import { UsersService } from './users.service';

const TOKEN_PURPOSE = 'email-token-hash';
const LIFETIME_MS = { verification: 24 * 3_600_000, password_reset: 3_600_000 } as const;
type Purpose = keyof typeof LIFETIME_MS;

/**
 * Email verification and password reset: single-use tokens (hashed at rest, 24 h and 1 h) mailed
 * through the outbox, redeemed by the public /auth endpoints.
 */
@Injectable()
export class AccountTokensService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly users: UsersRepository,
    private readonly usersService: UsersService,
    private readonly transactions: TransactionRunner,
    private readonly events: EventPublisher,
    private readonly masterKey: MasterKeyService,
    private readonly denylist: TokenDenylist,
    private readonly tokens: CredentialTokensRepository,
    private readonly passwords: PasswordHasher,
  ) {}

  async sendVerification(organizationId: string, userId: string): Promise<void> {
    const user = await this.usersService.get(organizationId, userId);
    await this.issue(user, 'verification', '/verify-email');
  }

  /** Always succeeds from the caller's view (no enumeration); mails only existing, active users. */
  async forgotPassword(organizationId: string, email: string): Promise<void> {
    if (!/^org_[a-z0-9]{1,64}$/.test(organizationId)) return;
    const user = await this.users.findByEmail(organizationId, email);
    if (!user || user.status !== 'active' || user.deleted_at) return;
    await this.issue(user, 'password_reset', '/reset-password');
  }

  async verifyEmail(token: string): Promise<void> {
    await this.redeem(token, 'verification', async (manager, row) => {
      await this.users.update(manager, row.organization_id, row.user_id, { email_verified: true });
      const user = (await this.users.findDetailed(row.organization_id, row.user_id, manager))!;
      await this.events.publish(manager, row.organization_id, 'user.updated', { user: userSnapshot(user), changes: ['email_verified'] });
    });
  }

  /** Sets a new password and ends every session of the user (access and refresh tokens). */
  async resetPassword(token: string, password: string): Promise<void> {
    const hash = await this.passwords.hash(password);
    const row = await this.redeem(token, 'password_reset', async (manager, r) => {
      await this.users.update(manager, r.organization_id, r.user_id, { password_hash: hash });
      await this.tokens.revokeUserRefreshTokens(manager, r.organization_id, r.user_id);
      await this.tokens.spendUserEmailTokens(manager, r.organization_id, r.user_id, 'password_reset');
    });
    await this.denylist.revokeSubject(row.user_id, row.organization_id);
  }

  private async issue(user: UserRecord, purpose: Purpose, path: string): Promise<void> {
    const token = randomBytes(32).toString('base64url');
    const link = `${this.config.publicBaseUrl}${path}?token=${token}`;
    await this.transactions.run(async (manager) => {
      await this.tokens.insertEmailToken(manager, {
        id: newId('etk'),
        hash: this.masterKey.hmac(TOKEN_PURPOSE, token),
        organizationId: user.organization_id,
        userId: user.id,
        purpose,
        expiresAt: new Date(Date.now() + LIFETIME_MS[purpose]),
      });
      await this.events.publish(manager, user.organization_id, 'email.requested', {
        template: purpose,
        to: user.email,
        user_id: user.id,
        first_name: user.first_name,
        sealed_link: this.masterKey.encrypt(MAIL_LINK_PURPOSE, link),
      });
    });
  }

  private async redeem(
    token: string,
    purpose: Purpose,
    apply: (manager: EntityManager, row: EmailTokenRow) => Promise<void>,
  ): Promise<EmailTokenRow> {
    const invalid = () => new AppException('AUTH_TOKEN_INVALID', 'The token is invalid, expired or already used');
    if (!/^[A-Za-z0-9_-]{20,100}$/.test(token)) throw invalid();
    return this.transactions.run(async (manager) => {
      const row = await this.tokens.lockUsableEmailToken(manager, this.masterKey.hmac(TOKEN_PURPOSE, token), purpose);
      if (!row) throw invalid();
      const user = await this.users.findDetailed(row.organization_id, row.user_id, manager);
      if (!user || user.deleted_at) throw invalid();
      await this.tokens.markEmailTokenUsed(manager, row.id);
      await apply(manager, row);
      return row;
    });
  }
}
