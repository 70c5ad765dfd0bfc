// The day a scheduled job is for: crontab tasks get graphile-worker's `_cron.ts` (the time the run
// was scheduled for, also when it is a backfilled run the worker missed while it was down), and
// pass it on to their per-organization jobs as `day` (YYYY-MM-DD, UTC).

/** The UTC day a crontab run is for (now, when started by hand without `_cron`). */
export function cronDay(payload: unknown): string {
  const ts = (payload as { _cron?: { ts?: string } } | null)?._cron?.ts;
  return (ts ? new Date(ts) : new Date()).toISOString().slice(0, 10);
}

/** A per-organization job's `day`; anything but YYYY-MM-DD is a bug in the producer. */
export function dayOf(payload: unknown, task: string): string {
  const day = (payload as { day?: unknown } | null)?.day;
  if (typeof day !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(day)) {
    throw new Error(`${task} payload must carry day (YYYY-MM-DD), got ${JSON.stringify(day) ?? 'none'}`);
  }
  return day;
}
