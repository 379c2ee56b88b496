import { DynamicModule, Module } from '@nestjs/common';
import { AppConfig, ConfigModule } from '@app/config';
import { DatabaseModule } from '@app/database';
import { EventsModule } from '@app/events';
import { LoggerModule } from 'nestjs-pino';
import { ApiKeysModule } from './modules/api-keys/api-keys.module';
import { AuthModule } from './modules/auth/auth.module';
import { HealthModule } from './modules/health/health.module';
import { IdempotencyModule } from './modules/idempotency/idempotency.module';
import { MailModule } from './modules/mail/mail.module';
import { OrganizationsModule } from './modules/organizations/organizations.module';
import { RoleManagementModule } from './modules/roles/role-management.module';
import { RolesModule } from './modules/roles/roles.module';
import { UsersModule } from './modules/users/users.module';
import { WebhooksModule } from './modules/webhooks/webhooks.module';

/** Paths that are redacted from every log line. */
export const REDACTED_LOG_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  '*.password',
  '*.api_key',
  '*.secret',
  '*.client_secret',
  '*.refresh_token',
  '*.access_token',
  '*.key',
];

/** One pino configuration for Fastify's request logger and for the application's own logs. */
export function loggerOptions(config: AppConfig) {
  return {
    level: config.logLevel,
    redact: { paths: REDACTED_LOG_PATHS, censor: '[REDACTED]' },
  };
}

@Module({})
export class AppModule {
  static forRoot(config: AppConfig, databaseUrl: string): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        // The request logger is Fastify's own (see create-app.ts): no per-request middleware.
        LoggerModule.forRoot({ pinoHttp: loggerOptions(config), useExisting: true, forRoutes: [] }),
        DatabaseModule.forRoot({
          url: databaseUrl,
          poolSize: config.databasePoolSize,
          statementTimeoutMs: config.databaseStatementTimeoutMs,
          logErrors: config.logLevel !== 'silent',
        }),
        EventsModule,
        HealthModule,
        IdempotencyModule,
        AuthModule,
        OrganizationsModule,
        ApiKeysModule,
        RolesModule,
        UsersModule,
        RoleManagementModule,
        WebhooksModule,
        MailModule,
      ],
    };
  }
}
