import { DynamicModule, Module, RequestMethod } from '@nestjs/common';
import { AppConfig, ConfigModule } from '@app/config';
import { DatabaseModule } from '@app/database';
import { EventsModule } from '@app/events';
import { LoggerModule } from 'nestjs-pino';
import type { IncomingMessage } from 'node:http';
import { ApiKeysModule } from './modules/api-keys/api-keys.module';
import { AuthModule } from './modules/auth/auth.module';
import { HealthModule } from './modules/health/health.module';
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

@Module({})
export class AppModule {
  static forRoot(config: AppConfig, databaseUrl: string): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        LoggerModule.forRoot({
          forRoutes: [{ path: '*path', method: RequestMethod.ALL }],
          pinoHttp: {
            level: config.logLevel,
            genReqId: (req: IncomingMessage) => (req as IncomingMessage & { id: string }).id,
            redact: { paths: REDACTED_LOG_PATHS, censor: '[REDACTED]' },
            customProps: (req: IncomingMessage) => ({ request_id: (req as IncomingMessage & { id: string }).id }),
            serializers: {
              req: (req: { id: string; method: string; url: string }) => ({ id: req.id, method: req.method, url: req.url }),
              res: (res: { statusCode: number }) => ({ status_code: res.statusCode }),
            },
          },
        }),
        DatabaseModule.forRoot({ url: databaseUrl, poolSize: config.databasePoolSize, logErrors: config.logLevel !== 'silent' }),
        EventsModule,
        HealthModule,
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
