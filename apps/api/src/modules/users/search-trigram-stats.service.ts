import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { WorkLoop } from '@app/common';
import { APP_CONFIG, AppConfig } from '@app/config';
import { indexedPart, TrigramSample } from './search-trigrams';
import { UsersRepository } from './users.repository';

/** Pages of the users table one sample reads (about 20,000 users, a fifth of a second at a million). */
const SAMPLE_PAGES = 700;

/**
 * Trigram frequencies of the users' search text, sampled at start and every
 * SEARCH_STATS_REFRESH_SECONDS, so that a search looks up the cheap part of a word in the trigram
 * index (search-trigrams.ts). Until the first sample, or with the refresh set to 0, searches look
 * up whole words. A failed sample keeps the previous one.
 */
@Injectable()
export class SearchTrigramStats implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(SearchTrigramStats.name);
  private readonly loop: WorkLoop;
  private sample: TrigramSample | undefined;

  constructor(
    private readonly users: UsersRepository,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.loop = new WorkLoop(() => this.take(), {
      pollMs: this.config.searchStatsRefreshSeconds * 1000,
      logger: this.logger,
      what: 'Sampling search trigram frequencies',
    });
  }

  /** A sample at start (in the background), then every SEARCH_STATS_REFRESH_SECONDS. */
  onApplicationBootstrap(): void {
    if (this.config.searchStatsRefreshSeconds > 0) this.loop.start();
  }

  beforeApplicationShutdown(): Promise<void> {
    return this.loop.stop();
  }

  /** Takes a new sample now (one at a time); a failure is logged and keeps the previous sample. */
  refresh(): Promise<void> {
    return this.loop.settle();
  }

  /** The part of a search word the trigram index should look up (the whole word without a sample). */
  indexedPart(word: string): string {
    return indexedPart(word, this.sample);
  }

  private async take(): Promise<void> {
    try {
      const { rows, counts } = await this.users.sampleSearchTrigrams(SAMPLE_PAGES);
      this.sample = { rows, counts: new Map(Object.entries(counts)) };
    } catch (e) {
      this.logger.warn({ err: e }, 'Sampling search trigram frequencies failed; searches keep the previous sample');
    }
  }
}
