// What caches tell the controllers that subscribe to them. A handler only maps an event to keys of
// its controller's queue (level-triggered: reconciles read the cache, never the event).

/** An object changed (as cached now), or was deleted (its last version, so it can still be mapped). */
export type Handler<T> = (key: string, obj: T, deleted: boolean) => void;

/** A cache whose changes can be followed. */
export interface Source<T> {
  subscribe(handler: Handler<T>): void;
}
