import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@app/config';
import { FieldsUpdate, FieldsUpdateResult, UsersRepository } from './users.repository';
import { SharedStatements } from './shared-statements';

/** The most updates one statement carries. */
export const MAX_UPDATES_PER_STATEMENT = 64;

/**
 * Gathers the PUT/PATCH /users/{id} of concurrent requests into shared statements
 * (SharedStatements, UsersRepository.updateFieldsBatch), at most USERS_UPDATE_BATCH_IN_FLIGHT at
 * once and up to 64 updates in one. A user's updates are made one after the other, in the order
 * they came.
 *
 * A shared statement never waits for a row lock. An update whose row another transaction holds (a
 * sign-in, a role change), or whose user does not exist, comes back unmade and is made alone
 * (UsersRepository.updateFields), waiting for the row as every update did before statements were
 * shared.
 */
@Injectable()
export class UserUpdateBatcher extends SharedStatements<FieldsUpdate, FieldsUpdateResult> {
  constructor(users: UsersRepository, @Inject(APP_CONFIG) config: AppConfig) {
    super({
      what: 'update',
      inFlight: config.usersUpdateBatchInFlight,
      maxPerStatement: MAX_UPDATES_PER_STATEMENT,
      key: (update) => `${update.organizationId}/${update.id}`,
      shared: (updates) => users.updateFieldsBatch(updates),
      alone: (update) => users.updateFields(update.organizationId, update.id, update.fields, update),
    });
  }
}
