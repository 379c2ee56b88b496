import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { WorkLoop } from '@app/common';
import { APP_CONFIG, AppConfig } from '@app/config';
import { indexedPart, TrigramSample } from './search-trigrams';
import { UsersRepository } from './users.repository';

/** Pages of the users table one sample reads (about 20,000 users, a fifth of a second at a million). */
const SAMPLE_PAGES = 700;
/** How often the users table's size is looked at (one catalog read) between scheduled samples. */
const SIZE_CHECK_MS = 5_000;
/** After a failure (the database unreachable), the next try waits this long (or the refresh interval, if shorter). */
const RETRY_AFTER_FAILURE_MS = 60_000;
/** A change of the table's live rows by fewer than this many never makes the sample stale. */
const MIN_SIZE_CHANGE = 1_000;
/** A sample older than this is stale once the table's live rows changed by more than SMALL_CHANGE. */
const SMALL_CHANGE_AFTER_MS = 30_000;
const SMALL_CHANGE = 1 / 50;

/**
 * Whether a sample taken `ageMs` ago of `sampledRows` live rows no longer stands for a table of
 * `tableRows`: at once when it changed by more than half, and after 30 s when by more than a
 * fiftieth (always by over 1,000 rows). New users bring trigrams the sample has never seen (the
 * numbers in a million sequential emails): a search would take them for rare and look them up in
 * the index, reading every user that has them. Sampled again within about 35 s of an import's
 * end, the sample has seen all but a fiftieth of the table.
 */
export function sampleIsStale(sampledRows: number, tableRows: number, ageMs: number): boolean {
  const changed = Math.abs(tableRows - sampledRows);
  if (changed <= MIN_SIZE_CHANGE) return false;
  return changed > sampledRows / 2 || (ageMs >= SMALL_CHANGE_AFTER_MS && changed > sampledRows * SMALL_CHANGE);
}

/**
 * Trigram frequencies of the users' search text, sampled at start and every
 * SEARCH_STATS_REFRESH_SECONDS, so that a search looks up the cheap part of a word in the trigram
 * index (search-trigrams.ts). Until the first sample, or with the refresh set to 0, searches look
 * up whole words. A failed sample keeps the previous one. Between samples the table's live rows
 * (PostgreSQL's statistics) are checked every few seconds: a table that grew or shrank by half
 * since the sample (a first import into a new deployment) is sampled again at once, and one that
 * changed by a fiftieth within 30 s (see sampleIsStale), not up to ten minutes later.
 */
@Injectable()
export class SearchTrigramStats implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(SearchTrigramStats.name);
  private readonly loop: WorkLoop;
  private sample: TrigramSample | undefined;
  private sampledAt = 0;
  private sampledTableRows = 0;
  private forceNext = false;
  private retryAt = 0;

  constructor(
    private readonly users: UsersRepository,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.loop = new WorkLoop(() => this.take(), {
      pollMs: Math.min(this.config.searchStatsRefreshSeconds * 1000, SIZE_CHECK_MS),
      logger: this.logger,
      what: 'Sampling search trigram frequencies',
    });
  }

  /** A sample at start (in the background), then every SEARCH_STATS_REFRESH_SECONDS or when the table's size changes by half. */
  onApplicationBootstrap(): void {
    if (this.config.searchStatsRefreshSeconds > 0) this.loop.start();
  }

  beforeApplicationShutdown(): Promise<void> {
    return this.loop.stop();
  }

  /** Takes a new sample now (one at a time); a failure is logged, keeps the previous sample and is retried after a minute. */
  refresh(): Promise<void> {
    this.forceNext = true;
    return this.loop.settle();
  }

  /** The part of a search word the trigram index should look up (the whole word without a sample). */
  indexedPart(word: string): string {
    return indexedPart(word, this.sample);
  }

  /** One pass of the loop: a new sample when one is due (see the class comment). */
  private async take(): Promise<void> {
    const forced = this.forceNext;
    this.forceNext = false;
    if (!forced && Date.now() < this.retryAt) return;
    try {
      const tableRows = await this.users.liveRowsEstimate();
      const age = Date.now() - this.sampledAt;
      const due =
        forced ||
        this.sample === undefined ||
        age >= this.config.searchStatsRefreshSeconds * 1000 ||
        sampleIsStale(this.sampledTableRows, tableRows, age);
      if (!due) return;
      const { rows, counts } = await this.users.sampleSearchTrigrams(SAMPLE_PAGES);
      this.sample = { rows, counts: new Map(Object.entries(counts)) };
      this.sampledAt = Date.now();
      this.sampledTableRows = tableRows;
    } catch (e) {
      this.retryAt = Date.now() + Math.min(RETRY_AFTER_FAILURE_MS, this.config.searchStatsRefreshSeconds * 1000);
      this.logger.warn({ err: e }, 'Sampling search trigram frequencies failed; searches keep the previous sample');
    }
  }
}
