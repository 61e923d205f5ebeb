/** How many items of a pool may run at once, when it is not a fixed number. */
export interface PoolLimits {
  /** Asked again each time an item ends and whenever `watchCapacity` signals. */
  concurrency(): number;
  /** Subscribes to "the limit may have grown"; returns the unsubscribe. */
  watchCapacity?(wake: () => void): () => void;
  /** Called once, with the first failure, before the running items are awaited (e.g. to cancel them). */
  onFirstFailure?(error: unknown): void;
}

/**
 * Runs `work` over `items`, in order, with at most `limit` running at once (a number, or a
 * limit asked again as items end). After the first failure no new item starts; the running ones
 * are awaited, then that failure is thrown. The one bounded-concurrency pool of the client:
 * files of a download, parts of a file, files of a sync.
 */
export async function runPool<T>(items: readonly T[], limit: number | PoolLimits, work: (item: T) => Promise<void>): Promise<void> {
  const limits: PoolLimits = typeof limit === "number" ? { concurrency: () => limit } : limit;
  let next = 0;
  let running = 0;
  let failure: { error: unknown } | null = null;
  let unwatch = (): void => {};
  await new Promise<void>((resolve) => {
    const launch = (): void => {
      while (failure === null && next < items.length && running < Math.max(1, limits.concurrency())) {
        const item = items[next++]!;
        running++;
        let started: Promise<void>;
        try {
          started = work(item);
        } catch (error) {
          started = Promise.reject(error);
        }
        started
          .catch((error: unknown) => {
            if (failure !== null) return;
            failure = { error };
            limits.onFirstFailure?.(error);
          })
          .finally(() => {
            running--;
            launch();
          });
      }
      if (running === 0) resolve();
    };
    unwatch = limits.watchCapacity?.(launch) ?? unwatch;
    launch();
  });
  unwatch();
  if (failure !== null) throw (failure as { error: unknown }).error;
}
