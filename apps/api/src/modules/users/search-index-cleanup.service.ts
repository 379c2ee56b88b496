import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { WorkLoop } from '@app/common';
import { APP_CONFIG, AppConfig } from '@app/config';
import { UsersRepository } from './users.repository';

/**
 * Keeps the trigram index's pending list short. PostgreSQL puts the trigrams of every written user
 * into the GIN index's pending list (up to 4 MB), and every search through the index reads the whole
 * list: at a million users a one-user search went from 1.4 to 7.8 ms of PostgreSQL CPU with the list
 * full. The write that fills the list merges it, about a second of work inside that request. This
 * merges it every SEARCH_INDEX_CLEANUP_INTERVAL_MS instead, outside any request, when this process
 * has searched through the index since the last merge: merging often costs writes more (smaller
 * merges cost more per entry), which only pays while someone reads the list. With several API
 * processes one merges at a time (an advisory lock).
 */
@Injectable()
export class SearchIndexCleanup implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(SearchIndexCleanup.name);
  private readonly loop: WorkLoop;
  /** Whether a search has read the index since the last merge (noteSearch). */
  private searched = false;

  constructor(
    private readonly users: UsersRepository,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.loop = new WorkLoop(() => (this.searched ? this.merge() : Promise.resolve()), {
      pollMs: this.config.searchIndexCleanupIntervalMs,
      logger: this.logger,
      what: 'Merging the search index pending list',
    });
  }

  onApplicationBootstrap(): void {
    if (this.config.searchIndexCleanupIntervalMs > 0) this.loop.start();
  }

  beforeApplicationShutdown(): Promise<void> {
    return this.loop.stop();
  }

  /** A search is about to read the trigram index: the next tick merges the list. */
  noteSearch(): void {
    this.searched = true;
  }

  /** Merges the list now, searched or not (one merge at a time). */
  clean(): Promise<void> {
    this.searched = true;
    return this.loop.settle();
  }

  /** A failure is logged; one the database will repeat (not the index's owner) stops the loop. */
  private async merge(): Promise<void> {
    this.searched = false;
    try {
      await this.users.cleanSearchIndexPendingList();
    } catch (e) {
      const code = (e as { code?: string }).code;
      // 42501: must be owner of the index (the API's role did not create it); 42883/42P01: no such function or index.
      if (code === '42501' || code === '42883' || code === '42P01') {
        void this.loop.stop();
        this.logger.warn({ err: e }, 'Cannot merge the search index pending list; writers will merge it themselves. Run the API as the owner of the tables, or set SEARCH_INDEX_CLEANUP_INTERVAL_MS=0');
        return;
      }
      this.logger.warn({ err: e }, 'Merging the search index pending list failed');
    }
  }
}
