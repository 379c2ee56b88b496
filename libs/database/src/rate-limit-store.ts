import { Injectable, Logger } from '@nestjs/common';
import { RedisService } from './redis.service';

export interface RateLimitHit {
  hourCount: number;
  secondCount: number;
  concurrent: number;
}

/*
 * One round trip per request: the hour and second windows (fixed, expiring) and the number of
 * requests in flight (refreshed on every start so a crashed instance's share drains away).
 */
const HIT_SCRIPT = `
local h = redis.call('INCR', KEYS[1])
if h == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local s = redis.call('INCR', KEYS[2])
if s == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
local c = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return {h, s, c}
`;
const RELEASE_SCRIPT = `
local c = redis.call('DECR', KEYS[1])
if c < 0 then redis.call('SET', KEYS[1], 0) end
return c
`;

const CONCURRENCY_TTL_MS = 120_000;

/**
 * Per-organization request counters, shared by every instance through Redis when REDIS_URL is set
 * and kept in process otherwise. When Redis fails, the limits fall back to this process's own
 * counters (fail open, logged) rather than refusing traffic.
 */
@Injectable()
export class RateLimitStore {
  private readonly logger = new Logger(RateLimitStore.name);
  private readonly windows = new Map<string, { count: number; expiresAt: number }>();
  private readonly inFlight = new Map<string, number>();
  private lastSweep = Date.now();

  constructor(private readonly redis: RedisService) {}

  async hit(org: string, hourStart: number, second: number): Promise<RateLimitHit> {
    const keys = [`rl:h:${org}:${hourStart}`, `rl:s:${org}:${second}`, `rl:c:${org}`];
    const client = this.redis.client;
    if (client) {
      try {
        const [hourCount, secondCount, concurrent] = (await client.eval(HIT_SCRIPT, 3, ...keys, 3_660_000, 2000, CONCURRENCY_TTL_MS)) as number[];
        return { hourCount: hourCount!, secondCount: secondCount!, concurrent: concurrent! };
      } catch (error) {
        this.logger.warn({ err: error }, 'Redis unavailable for rate limits; counting in process');
      }
    }
    const now = Date.now();
    this.sweep(now);
    const inc = (key: string, ttl: number) => {
      let w = this.windows.get(key);
      if (!w || w.expiresAt <= now) {
        w = { count: 0, expiresAt: now + ttl };
        this.windows.set(key, w);
      }
      return ++w.count;
    };
    const concurrent = (this.inFlight.get(org) ?? 0) + 1;
    this.inFlight.set(org, concurrent);
    return { hourCount: inc(keys[0]!, 3_660_000), secondCount: inc(keys[1]!, 2000), concurrent };
  }

  /** A request of the organization finished (or was refused): one fewer in flight. */
  async release(org: string): Promise<void> {
    const client = this.redis.client;
    if (client) {
      try {
        await client.eval(RELEASE_SCRIPT, 1, `rl:c:${org}`);
        return;
      } catch {
        /* fall through to the local count, which is what hit() used */
      }
    }
    this.inFlight.set(org, Math.max(0, (this.inFlight.get(org) ?? 1) - 1));
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < 60_000) return;
    for (const [k, w] of this.windows) if (w.expiresAt <= now) this.windows.delete(k);
    this.lastSweep = now;
  }
}
