import { DynamicModule, Global, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { MIGRATIONS } from './migrations';
import { SnakeNamingStrategy } from './snake-naming.strategy';
import { CounterStore } from './counter-store';
import { RateLimitStore } from './rate-limit-store';
import { RedisService } from './redis.service';
import { TransactionRunner } from './transaction-runner';

export interface DatabaseOptions {
  url: string;
  poolSize: number;
  /** statement_timeout of every connection (0: none). */
  statementTimeoutMs: number;
  logErrors: boolean;
}

/** TypeORM over PostgreSQL (embedded or served). Migrations run at start; synchronize is never on. */
@Global()
@Module({})
export class DatabaseModule {
  static forRoot(options: DatabaseOptions): DynamicModule {
    return {
      module: DatabaseModule,
      imports: [
        TypeOrmModule.forRoot({
          type: 'postgres',
          url: options.url,
          autoLoadEntities: true,
          synchronize: false,
          migrations: MIGRATIONS,
          migrationsRun: true,
          migrationsTransactionMode: 'each',
          namingStrategy: new SnakeNamingStrategy(),
          extra: {
            max: options.poolSize,
            application_name: 'user-management-api',
            // Sent at connection start: no round trip per query. A statement that runs longer is
            // cancelled by PostgreSQL (its transaction rolls back) and answers 503.
            ...(options.statementTimeoutMs > 0 ? { statement_timeout: options.statementTimeoutMs } : {}),
          },
          logging: options.logErrors ? ['error'] : false,
          retryAttempts: 3,
          retryDelay: 500,
        }),
      ],
      providers: [TransactionRunner, RedisService, CounterStore, RateLimitStore],
      exports: [TransactionRunner, RedisService, CounterStore, RateLimitStore],
    };
  }
}
