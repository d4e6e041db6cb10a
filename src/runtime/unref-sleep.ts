/**
 * A sleep that does not keep the process alive: for deadlines raced against work during shutdown,
 * where an armed Bun.sleep held a finished script open for the rest of its grace period.
 */
export function unrefSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)).unref());
}
