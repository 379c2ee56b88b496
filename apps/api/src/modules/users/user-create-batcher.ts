import { Inject, Injectable } from '@nestjs/common';
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
export class UserCreateBatcher extends SharedStatements<UserCreate, UserCreateResult> {
  constructor(users: UsersRepository, @Inject(APP_CONFIG) config: AppConfig) {
    super({
      what: 'create',
      inFlight: config.usersCreateBatchInFlight,
      maxPerStatement: MAX_CREATES_PER_STATEMENT,
      shared: (creates) => users.createMany(creates),
      alone: (create) => users.createOne(create),
    });
  }
}
