import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { deleteInBatches, WorkLoop } from '@app/common';
import { CredentialTokensRepository } from './credential-tokens.repository';

/** How often expired tokens are looked for. */
const INTERVAL_MS = 10 * 60_000;
/** How long after expiry a token is kept (a token presented later is unknown: 401, as an expired one is). */
const KEPT_AFTER_EXPIRY_MS = 24 * 3_600_000;
/** Rows per statement, and statements per pass: a backlog goes in bounded steps. */
const BATCH = 5_000;
const MAX_BATCHES = 20;

/**
 * Deletes refresh tokens and mailed tokens a day after they expire. Every sign-in and every refresh
 * adds a refresh token (rotation keeps the used ones, so that a reused one can revoke its session
 * while it could still be valid); without this the table would grow with every session forever.
 */
@Injectable()
export class CredentialTokensCleanup implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(CredentialTokensCleanup.name);
  private readonly loop = new WorkLoop(() => this.pass(), { pollMs: INTERVAL_MS, logger: this.logger, what: 'Deleting expired tokens' });

  constructor(private readonly tokens: CredentialTokensRepository) {}

  onApplicationBootstrap(): void {
    this.loop.start();
  }

  beforeApplicationShutdown(): Promise<void> {
    return this.loop.stop();
  }

  /** Runs one pass now (one at a time): tests wait on it. */
  run(): Promise<void> {
    return this.loop.settle();
  }

  private async pass(): Promise<void> {
    const before = new Date(Date.now() - KEPT_AFTER_EXPIRY_MS);
    const options = { batch: BATCH, maxBatches: MAX_BATCHES, stopped: () => this.loop.isStopped };
    await deleteInBatches(() => this.tokens.deleteExpiredRefreshTokens(before, BATCH), options);
    await deleteInBatches(() => this.tokens.deleteExpiredEmailTokens(before, BATCH), options);
  }
}
