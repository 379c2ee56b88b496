/**
 * Runs `step` (which deletes up to `batch` rows and says how many went) until a step comes back
 * short, `maxBatches` steps have run, or `stopped()` says the process is shutting down: a backlog
 * goes in bounded statements, and a pass in bounded time. Returns how many rows went in all.
 */
export async function deleteInBatches(step: () => Promise<number>, options: { batch: number; maxBatches: number; stopped: () => boolean }): Promise<number> {
  let deleted = 0;
  for (let i = 0; i < options.maxBatches && !options.stopped(); i++) {
    const n = await step();
    deleted += n;
    if (n < options.batch) break;
  }
  return deleted;
}
