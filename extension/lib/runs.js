// The budget of one user-started page analysis, in chrome.storage.session (trusted contexts
// only). A content script may classify texts only while the user's analysis of its tab runs,
// at most MAX_TEXTS_PER_PAGE in all. The worker counts the results itself: the history and
// the popup show what the server answered, not what the page reports.
import { addCounts, tally } from "./history.js";
import { forbidden, MAX_TEXTS_PER_PAGE } from "./trust.js";

export const runKey = (tabId) => `run:${tabId}`;

// Budget updates are serialised: two batches of one page must not both spend the same texts.
let runLock = Promise.resolve();
function withRuns(action) {
  const next = runLock.then(action);
  runLock = next.catch(() => {});
  return next;
}

export async function startRun(tabId) {
  await withRuns(() => chrome.storage.session.set({
    [runKey(tabId)]: { remaining: MAX_TEXTS_PER_PAGE, counts: tally([]) } }));
}

export function takeFromRun(tabId, n) {
  return withRuns(async () => {
    const { [runKey(tabId)]: run } = await chrome.storage.session.get(runKey(tabId));
    if (!run) throw forbidden("no analysis of this tab is running (start one from the popup)");
    if (n > run.remaining) {
      throw forbidden(`one analysis classifies at most ${MAX_TEXTS_PER_PAGE} texts`);
    }
    await chrome.storage.session.set({ [runKey(tabId)]: { ...run, remaining: run.remaining - n } });
  });
}

export function addToRun(tabId, results) {
  return withRuns(async () => {
    const { [runKey(tabId)]: run } = await chrome.storage.session.get(runKey(tabId));
    if (!run) return;
    const counts = tally(results.filter(Boolean));
    const merged = addCounts({ days: { run: run.counts } }, "run", counts).days.run ?? tally([]);
    await chrome.storage.session.set({ [runKey(tabId)]: { ...run, counts: merged } });
  });
}

/** End the tab's run and return its counts; refuses if none runs. */
export function endRun(tabId) {
  return withRuns(async () => {
    const { [runKey(tabId)]: run } = await chrome.storage.session.get(runKey(tabId));
    if (!run) throw forbidden("no analysis of this tab is running");
    await chrome.storage.session.remove(runKey(tabId));
    return { ...tally([]), ...run.counts };
  });
}

export async function requireRun(tabId) {
  const { [runKey(tabId)]: run } = await chrome.storage.session.get(runKey(tabId));
  if (!run) throw forbidden("no analysis of this tab is running");
}
