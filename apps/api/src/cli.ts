import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { API_SCOPES, AppException, isApiScope } from '@app/common';
import { ConfigValidationError, loadConfig } from '@app/config';
import { RunningDatabase, startEmbeddedPostgres } from '@app/database';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AppModule } from './app.module';
import { mapCreatedApiKey } from './modules/api-keys/api-keys.mapper';
import { ApiKeysService } from './modules/api-keys/api-keys.service';
import { SigningKeysService } from './modules/auth/signing-keys.service';
import { mapOrganization } from './modules/organizations/organizations.mapper';
import { OrganizationsService } from './modules/organizations/organizations.service';
import { PLANS, Plan } from './modules/organizations/plans';

const USAGE = `Operator commands (no token needed; they act on the configured database):
  npm run cli -- migrate
  npm run cli -- org:create --name Acme --plan basic|professional|enterprise [--limits '{"requests_per_hour":5000}']
  npm run cli -- apikey:create --org org_… --name ci [--scopes user:read,user:write]
  npm run cli -- apikey:revoke --id key_…
  npm run cli -- keys:rotate`;

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  const { values } = parseArgs({
    args: rest,
    options: {
      name: { type: 'string' },
      plan: { type: 'string' },
      limits: { type: 'string' },
      org: { type: 'string' },
      scopes: { type: 'string' },
      id: { type: 'string' },
    },
  });
  if (!command || command === 'help' || command === '--help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const config = loadConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
  let embedded: RunningDatabase | undefined;
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    embedded = await startEmbeddedPostgres({ dir: join(config.dataDir, 'postgres'), database: 'user_management' });
    databaseUrl = embedded.url;
  }
  // Creating the context runs the migrations (and the first-start bootstrap on an empty database).
  const app = await NestFactory.createApplicationContext(AppModule.forRoot(config, databaseUrl), { logger: ['error'] });
  try {
    const print = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    switch (command) {
      case 'migrate':
        print({ migrated: true });
        break;
      case 'org:create': {
        if (!values.name || !values.plan || !(PLANS as readonly string[]).includes(values.plan)) {
          throw new Error(`org:create needs --name and --plan (${PLANS.join('|')})`);
        }
        const limits = values.limits ? (JSON.parse(values.limits) as Record<string, number>) : undefined;
        const created = await app.get(OrganizationsService).create(values.name, values.plan as Plan, limits);
        print({ organization: mapOrganization(created.organization), api_key: mapCreatedApiKey(created.key, created.secret) });
        break;
      }
      case 'apikey:create': {
        if (!values.org || !values.name) throw new Error('apikey:create needs --org and --name');
        await app.get(OrganizationsService).get(values.org);
        const scopes = values.scopes ? values.scopes.split(',').map((s) => s.trim()) : API_SCOPES.filter((s) => s !== 'platform:admin');
        const unknown = scopes.filter((s) => !isApiScope(s));
        if (unknown.length > 0) throw new Error(`Unknown scopes: ${unknown.join(', ')}`);
        const { key, secret } = await app.get(ApiKeysService).create(undefined, values.org, values.name, scopes);
        print(mapCreatedApiKey(key, secret));
        break;
      }
      case 'apikey:revoke': {
        if (!values.id) throw new Error('apikey:revoke needs --id');
        const organizationId = await app.get(ApiKeysService).revokeAnywhere(values.id);
        print({ revoked: values.id, organization_id: organizationId });
        break;
      }
      case 'keys:rotate':
        print({ kid: await app.get(SigningKeysService).rotate() });
        break;
      default:
        throw new Error(`Unknown command "${command}"\n${USAGE}`);
    }
  } finally {
    await app.close();
    await embedded?.stop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    const message =
      error instanceof ConfigValidationError || error instanceof AppException || error instanceof Error
        ? error.message
        : String(error);
    process.stderr.write(`${message}\n`);
    process.exit(1);
  },
);
