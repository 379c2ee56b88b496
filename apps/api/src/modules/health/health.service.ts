import { Injectable } from '@nestjs/common';
import { RedisService } from '@app/database';
import { DataSource } from 'typeorm';

export interface HealthCheck {
  healthy: boolean;
  latency_ms?: number;
  backend?: string;
  error?: string;
}

export interface HealthReport {
  status: 'healthy' | 'degraded' | 'unhealthy';
  timestamp: string;
  checks: Record<string, HealthCheck>;
}

const CHECK_TIMEOUT_MS = 2000;

/** Seed §8.4: one check per dependency; the database is required, the shared cache is not. */
@Injectable()
export class HealthService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly redis: RedisService,
  ) {}

  async report(): Promise<HealthReport> {
    const [database, cache] = await Promise.all([
      timed(async () => {
        await this.dataSource.query('SELECT 1');
        return true;
      }),
      this.redis.client ? timed(() => this.redis.ping()) : Promise.resolve<HealthCheck>({ healthy: true }),
    ]);
    cache.backend = this.redis.client ? 'redis' : 'memory';
    const status = !database.healthy ? 'unhealthy' : !cache.healthy ? 'degraded' : 'healthy';
    return { status, timestamp: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'), checks: { database, cache } };
  }
}

async function timed(check: () => Promise<boolean>): Promise<HealthCheck> {
  const started = performance.now();
  try {
    const ok = await Promise.race([
      check(),
      new Promise<boolean>((_, reject) => setTimeout(() => reject(new Error('timed out')), CHECK_TIMEOUT_MS).unref()),
    ]);
    return { healthy: ok, latency_ms: Math.round((performance.now() - started) * 100) / 100 };
  } catch (error) {
    return { healthy: false, error: error instanceof Error ? error.message : 'failed' };
  }
}
