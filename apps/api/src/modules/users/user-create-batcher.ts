import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@app/config';
import { UserCreate, UserCreateResult, UsersRepository } from './users.repository';
import { SharedStatements } from './shared-statements';

/** The most creates one statement carries. */
export const MAX_CREATES_PER_STATEMENT = 64;

/**
 * Gathers the POST /users of concurrent requests (of any organizations) into shared statements
 * (SharedStatements, UsersRepository.createMany), at most USERS_CREATE_BATCH_IN_FLIGHT at once and
 * up to 64 creates in one. A create whose custom role another transaction holds (its deletion) is
 * made alone (UsersRepository.createOne), waiting for the role as every create did before
 * statements were shared. Creates in an organization whose plan limits monthly active users run in
 * that limit's transaction and never come here.
 */
@Injectable()
export class UserCreateBatcher implements OnApplicationShutdown {
  private readonly logger = new Logger(UserCreateBatcher.name);
  private readonly statements: SharedStatements<UserCreate, UserCreateResult>;

  constructor(users: UsersRepository, @Inject(APP_CONFIG) config: AppConfig) {
    this.statements = new SharedStatements({
      what: 'create',
      inFlight: config.usersCreateBatchInFlight,
      maxPerStatement: MAX_CREATES_PER_STATEMENT,
      shared: (creates) => users.createMany(creates),
      alone: (create) => users.createOne(create),
    });
  }

  /** Statements run, creates they carried, the most in one, and creates made alone after a shared statement. */
  get stats() {
    return this.statements.stats;
  }

  /** Creates waiting for a statement. */
  get queued(): number {
    return this.statements.queued;
  }

  /** Makes `create` (with others, or alone) and resolves with its own result. */
  run(create: UserCreate): Promise<UserCreateResult> {
    return this.statements.run(create);
  }

  onApplicationShutdown(): void {
    if (this.stats.statements > 0) this.logger.log({ ...this.stats }, 'User create statements run by this process');
  }
}
