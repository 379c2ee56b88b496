import { isAbsolute, resolve } from 'node:path';

/** The typed, validated configuration. Nothing outside this library reads process.env. */
export interface AppConfig {
  host: string;
  port: number;
  dataDir: string;
  databaseUrl: string | undefined;
  databasePoolSize: number;
  /** PostgreSQL's statement_timeout for the API's connections (0: none); migrations run without it. */
  databaseStatementTimeoutMs: number;
  /** How often the API samples search-text trigram frequencies, besides when the users table grows or shrinks by half (0: never; searches then look up whole words). */
  searchStatsRefreshSeconds: number;
  /** How often the trigram index's pending list is merged into the index in the background (0: never; writers then merge it when it fills). */
  searchIndexCleanupIntervalMs: number;
  /** How many shared update statements (PUT/PATCH /users/{id}) may run at once (0: each update runs alone). */
  usersUpdateBatchInFlight: number;
  /** How many shared create statements (POST /users) may run at once (0: each create runs alone). */
  usersCreateBatchInFlight: number;
  redisUrl: string | undefined;
  redisKeyPrefix: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  masterKey: string | undefined;
  bootstrapApiKey: string | undefined;
  jwtIssuer: string;
  jwtAudience: string;
  trustProxy: boolean;
  publicBaseUrl: string;
  shutdownTimeoutMs: number;
  authFailuresPerIp: number;
  authFailureWindowSeconds: number;
  webhookWorkers: number;
  outboxRetentionHours: number;
  webhookDeliveryRetentionDays: number;
  passwordHashMemoryKib: number;
  smtpUrl: string | undefined;
  mailFrom: string;
  mailTemplatesDir: string;
  outboundAllowedHosts: string[];
}

export class ConfigValidationError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** The format every API key has, the bootstrap one included (api-keys.service.ts authenticates the same). */
const BOOTSTRAP_KEY_FORMAT = /^sk_(live|test)_[A-Za-z0-9]{24,128}$/;

type Env = Record<string, string | undefined>;

/** Reads and validates the environment once; throws ConfigValidationError listing every problem. */
export function loadConfig(env: Env = process.env): AppConfig {
  const problems: string[] = [];
  const str = (name: string): string | undefined => {
    const value = env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = str(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      problems.push(`${name} must be an integer between ${min} and ${max} (got "${raw}")`);
      return fallback;
    }
    return value;
  };
  const oneOf = (name: string, fallback: number, allowed: number[]): number => {
    const raw = str(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!allowed.includes(value)) {
      problems.push(`${name} must be one of ${allowed.join(', ')} (got "${raw}")`);
      return fallback;
    }
    return value;
  };
  const bool = (name: string, fallback: boolean): boolean => {
    const raw = str(name)?.toLowerCase();
    if (raw === undefined) return fallback;
    if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
    if (['0', 'false', 'no', 'off'].includes(raw)) return false;
    problems.push(`${name} must be true or false (got "${raw}")`);
    return fallback;
  };
  const url = (name: string, protocols: string[]): string | undefined => {
    const raw = str(name);
    if (raw === undefined) return undefined;
    try {
      const parsed = new URL(raw);
      if (!protocols.includes(parsed.protocol)) {
        problems.push(`${name} must use ${protocols.join(' or ')} (got "${parsed.protocol}")`);
      }
    } catch {
      problems.push(`${name} is not a valid URL`);
    }
    return raw;
  };

  const port = int('PORT', 3000, 0, 65535);
  const dataDirRaw = str('DATA_DIR') ?? './var';
  const logLevel = (str('LOG_LEVEL') ?? 'info').toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
  }
  const masterKey = str('MASTER_KEY');
  if (masterKey !== undefined && masterKey.length < 32) {
    problems.push('MASTER_KEY must be at least 32 characters (e.g. `openssl rand -base64 32`)');
  }
  const bootstrapApiKey = str('BOOTSTRAP_API_KEY');
  if (bootstrapApiKey !== undefined && !BOOTSTRAP_KEY_FORMAT.test(bootstrapApiKey)) {
    problems.push('BOOTSTRAP_API_KEY must match sk_(live|test)_[A-Za-z0-9]{24,128}');
  }
  const publicBaseUrl = url('PUBLIC_BASE_URL', ['http:', 'https:']) ?? `http://localhost:${port}`;

  const config: AppConfig = {
    host: str('HOST') ?? '0.0.0.0',
    port,
    dataDir: isAbsolute(dataDirRaw) ? dataDirRaw : resolve(process.cwd(), dataDirRaw),
    databaseUrl: url('DATABASE_URL', ['postgres:', 'postgresql:']),
    databasePoolSize: int('DATABASE_POOL_SIZE', 10, 1, 200),
    databaseStatementTimeoutMs: int('DATABASE_STATEMENT_TIMEOUT_MS', 30_000, 0, 3_600_000),
    searchStatsRefreshSeconds: int('SEARCH_STATS_REFRESH_SECONDS', 600, 0, 86_400),
    searchIndexCleanupIntervalMs: int('SEARCH_INDEX_CLEANUP_INTERVAL_MS', 2000, 0, 600_000),
    usersUpdateBatchInFlight: int('USERS_UPDATE_BATCH_IN_FLIGHT', 4, 0, 200),
    usersCreateBatchInFlight: int('USERS_CREATE_BATCH_IN_FLIGHT', 4, 0, 200),
    redisUrl: url('REDIS_URL', ['redis:', 'rediss:']),
    redisKeyPrefix: str('REDIS_KEY_PREFIX') ?? 'um:',
    logLevel: logLevel as AppConfig['logLevel'],
    masterKey,
    bootstrapApiKey,
    // Not derived from the port: every instance behind one address must issue the same `iss`.
    jwtIssuer: str('JWT_ISSUER') ?? (str('PUBLIC_BASE_URL') ? publicBaseUrl.replace(/\/$/, '') : 'user-management-api'),
    jwtAudience: str('JWT_AUDIENCE') ?? 'user-management-api',
    trustProxy: bool('TRUST_PROXY', false),
    publicBaseUrl: publicBaseUrl.replace(/\/$/, ''),
    shutdownTimeoutMs: int('SHUTDOWN_TIMEOUT_MS', 10_000, 0, 600_000),
    authFailuresPerIp: int('AUTH_FAILURES_PER_IP', 100, 1, 1_000_000),
    authFailureWindowSeconds: int('AUTH_FAILURE_WINDOW_SECONDS', 600, 1, 86_400),
    webhookWorkers: int('WEBHOOK_WORKERS', 4, 0, 64),
    outboxRetentionHours: int('OUTBOX_RETENTION_HOURS', 168, 1, 87_600),
    webhookDeliveryRetentionDays: int('WEBHOOK_DELIVERY_RETENTION_DAYS', 30, 1, 3650),
    passwordHashMemoryKib: oneOf('PASSWORD_HASH_MEMORY_KIB', 7168, [47104, 19456, 12288, 9216, 7168]),
    smtpUrl: url('SMTP_URL', ['smtp:', 'smtps:']),
    mailFrom: str('MAIL_FROM') ?? 'User Management <no-reply@localhost>',
    mailTemplatesDir: resolve(process.cwd(), str('MAIL_TEMPLATES_DIR') ?? 'config/mail'),
    outboundAllowedHosts: (str('OUTBOUND_ALLOWED_HOSTS') ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase().replace(/^\[|\]$/g, ''))
      .filter(Boolean),
  };
  if (problems.length > 0) throw new ConfigValidationError(problems);
  return config;
}
