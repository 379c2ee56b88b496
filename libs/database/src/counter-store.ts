import { Injectable, Logger } from '@nestjs/common';
import { RedisService } from './redis.service';

export interface CounterState {
  count: number;
  /** Unix milliseconds when the window ends. */
  resetAt: number;
}

const INCREMENT_SCRIPT = `
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
`;

const EXTEND_SCRIPT = `
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[1]) then
  if ttl < 0 then redis.call('SET', KEYS[1], 1, 'PX', ARGV[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
end
return 1
`;

const CLAIM_SCRIPT = `
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
local allowed = math.max(1, tonumber(ARGV[1]) - used)
local taken = tonumber(redis.call('GET', KEYS[1]) or '0')
if taken >= allowed then return 0 end
redis.call('SET', KEYS[1], math.max(taken, 0) + 1, 'PX', ARGV[2])
return 1
`;

const RELEASE_SCRIPT = `
local left = redis.call('DECR', KEYS[1])
if left <= 0 then redis.call('DEL', KEYS[1]) end
return left
`;

/**
 * Fixed-window counters shared by every API instance through Redis when REDIS_URL is set, and kept
 * in process otherwise. A Redis failure falls back to the in-process window (fail open, logged):
 * limits then hold per instance until Redis is back.
 */
@Injectable()
export class CounterStore {
  private readonly logger = new Logger(CounterStore.name);
  private readonly memory = new Map<string, CounterState>();
  private lastSweep = Date.now();

  constructor(private readonly redis: RedisService) {}

  async increment(key: string, windowMs: number, by = 1): Promise<CounterState> {
    const client = this.redis.client;
    if (client) {
      try {
        const [count, ttl] = (await client.eval(INCREMENT_SCRIPT, 1, `ctr:${key}`, windowMs, by)) as [number, number];
        return { count, resetAt: Date.now() + ttl };
      } catch (error) {
        this.logger.warn({ err: error }, 'Redis unavailable for counters; using in-process counters');
      }
    }
    return this.incrementInMemory(key, windowMs, by);
  }

  async get(key: string): Promise<CounterState | undefined> {
    const client = this.redis.client;
    if (client) {
      try {
        const [count, ttl] = await Promise.all([client.get(`ctr:${key}`), client.pttl(`ctr:${key}`)]);
        return count === null ? undefined : { count: Number(count), resetAt: Date.now() + Math.max(ttl, 0) };
      } catch (error) {
        this.logger.warn({ err: error }, 'Redis unavailable for counters; using in-process counters');
      }
    }
    const state = this.memory.get(key);
    return state && state.resetAt > Date.now() ? state : undefined;
  }

  /**
   * Makes `key` live for at least `ms` from now (creating it with count 1, or lengthening it; never
   * shortening it): a lock that every further failure can extend.
   */
  async extend(key: string, ms: number): Promise<void> {
    const client = this.redis.client;
    if (client) {
      try {
        await client.eval(EXTEND_SCRIPT, 1, `ctr:${key}`, ms);
        return;
      } catch (error) {
        this.logger.warn({ err: error }, 'Redis unavailable for counters; using in-process counters');
      }
    }
    const now = Date.now();
    const state = this.memory.get(key);
    if (!state || state.resetAt <= now) this.memory.set(key, { count: 1, resetAt: now + ms });
    else state.resetAt = Math.max(state.resetAt, now + ms);
  }

  /**
   * Claims one of the slots `slotKey` counts, atomically: refused while `lockKey` exists, or when
   * max(1, budget - count of `budgetKey`) slots are taken already. With the budget a failure count,
   * attempts in flight plus failures never exceed the budget, however many arrive at once. A claim
   * is given back with release(); `ttlMs` bounds a claim whose process died holding it.
   */
  async claim(slotKey: string, budgetKey: string, lockKey: string, budget: number, ttlMs: number): Promise<boolean> {
    const client = this.redis.client;
    if (client) {
      try {
        return (await client.eval(CLAIM_SCRIPT, 3, `ctr:${slotKey}`, `ctr:${budgetKey}`, `ctr:${lockKey}`, budget, ttlMs)) === 1;
      } catch (error) {
        this.logger.warn({ err: error }, 'Redis unavailable for counters; using in-process counters');
      }
    }
    const now = Date.now();
    const live = (key: string) => {
      const state = this.memory.get(key);
      return state && state.resetAt > now ? state : undefined;
    };
    if (live(lockKey)) return false;
    const allowed = Math.max(1, budget - (live(budgetKey)?.count ?? 0));
    const taken = Math.max(0, live(slotKey)?.count ?? 0);
    if (taken >= allowed) return false;
    // Each claim keeps the slots alive for ttlMs more, as the Redis script does.
    this.memory.set(slotKey, { count: taken + 1, resetAt: now + ttlMs });
    return true;
  }

  /** Gives back a slot taken with claim() (never below zero). */
  async release(slotKey: string): Promise<void> {
    const client = this.redis.client;
    if (client) {
      try {
        await client.eval(RELEASE_SCRIPT, 1, `ctr:${slotKey}`);
        return;
      } catch (error) {
        this.logger.warn({ err: error }, 'Redis unavailable for counters; using in-process counters');
      }
    }
    const state = this.memory.get(slotKey);
    if (!state) return;
    state.count -= 1;
    if (state.count <= 0) this.memory.delete(slotKey);
  }

  async reset(key: string): Promise<void> {
    this.memory.delete(key);
    const client = this.redis.client;
    if (client) await client.del(`ctr:${key}`).catch(() => undefined);
  }

  private incrementInMemory(key: string, windowMs: number, by: number): CounterState {
    const now = Date.now();
    if (now - this.lastSweep > 60_000) {
      for (const [k, v] of this.memory) if (v.resetAt <= now) this.memory.delete(k);
      this.lastSweep = now;
    }
    let state = this.memory.get(key);
    if (!state || state.resetAt <= now) {
      state = { count: 0, resetAt: now + windowMs };
      this.memory.set(key, state);
    }
    state.count += by;
    return { ...state };
  }
}
