import { MigrationInterface, QueryRunner } from 'typeorm';
import { CreateOutbox1764230400000 } from './1764230400000-CreateOutbox';
import { CreateIdentity1764230500000 } from './1764230500000-CreateIdentity';
import { CreateUsers1764230600000 } from './1764230600000-CreateUsers';
import { CreateWebhooks1764230700000 } from './1764230700000-CreateWebhooks';
import { CreateEmailTokens1764230800000 } from './1764230800000-CreateEmailTokens';
import { AddOutboxSequence1764230900000 } from './1764230900000-AddOutboxSequence';
import { UsersFillfactor1764231000000 } from './1764231000000-UsersFillfactor';
import { DropOutboxPendingIndex1764231100000 } from './1764231100000-DropOutboxPendingIndex';
import { IdempotencyKeysCreatedIndex1764231200000 } from './1764231200000-IdempotencyKeysCreatedIndex';
import { ResourceVersions1764231300000 } from './1764231300000-ResourceVersions';
import { UsersStatusBeforeDelete1764231400000 } from './1764231400000-UsersStatusBeforeDelete';
import { MetadataChangedKeysFunction1764231500000 } from './1764231500000-MetadataChangedKeysFunction';
import { UserRolesJsonFunction1764231600000 } from './1764231600000-UserRolesJsonFunction';
import { UsersFirstNameIndex1764231700000 } from './1764231700000-UsersFirstNameIndex';
import { UserLoginSortKeys1764231800000 } from './1764231800000-UserLoginSortKeys';
import { UsersSoftDeletedIndex1764231900000 } from './1764231900000-UsersSoftDeletedIndex';
import { RefreshTokensUserAndExpiryIndexes1764232000000 } from './1764232000000-RefreshTokensUserAndExpiryIndexes';

/**
 * A migration run without the connections' statement timeout (DATABASE_STATEMENT_TIMEOUT_MS):
 * building an index on a large table may take minutes. Each migration runs in a transaction of its
 * own (migrationsTransactionMode 'each'), which SET LOCAL lasts for.
 */
export function withoutStatementTimeout<T extends new () => MigrationInterface>(Migration: T): T {
  return class extends (Migration as new () => MigrationInterface) {
    override async up(q: QueryRunner): Promise<void> {
      await q.query('SET LOCAL statement_timeout = 0');
      await super.up(q);
    }

    override async down(q: QueryRunner): Promise<void> {
      await q.query('SET LOCAL statement_timeout = 0');
      await super.down(q);
    }
  } as unknown as T;
}

/** Every migration, in order. Listed explicitly so that the compiled app and the tests run the same set. */
export const MIGRATIONS = [CreateOutbox1764230400000, CreateIdentity1764230500000, CreateUsers1764230600000, CreateWebhooks1764230700000, CreateEmailTokens1764230800000, AddOutboxSequence1764230900000, UsersFillfactor1764231000000, DropOutboxPendingIndex1764231100000, IdempotencyKeysCreatedIndex1764231200000, ResourceVersions1764231300000, UsersStatusBeforeDelete1764231400000, MetadataChangedKeysFunction1764231500000, UserRolesJsonFunction1764231600000, UsersFirstNameIndex1764231700000, UserLoginSortKeys1764231800000, UsersSoftDeletedIndex1764231900000, RefreshTokensUserAndExpiryIndexes1764232000000].map(withoutStatementTimeout);
