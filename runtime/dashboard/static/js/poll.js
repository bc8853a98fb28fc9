// Polling: run `tick` now and then every `ms` until stopped; a failing tick hands its error to `onError` and stops.

export function poll(tick, ms, onError) {
  let stopped = false;
  let timer = null;
  const loop = async () => {
    if (stopped) return;
    try {
      await tick();
    } catch (err) {
      if (!stopped) onError(err);
      stopped = true;
      return;
    }
    if (!stopped) timer = setTimeout(loop, ms);
  };
  const first = loop();
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
  };
  return { first, stop };
}

/** How often the pages refresh while a job may change (milliseconds). */
export const REFRESH_MS = 1000;
