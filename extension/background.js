// CivicSense service worker: every network call happens here (KServe sends no CORS headers,
// so a content script's fetch would be blocked), only to the configured endpoint, and only
// when the user asks (popup buttons or the context menu).
//
// Trust boundary: only the extension's own pages (popup, panel, options) may change settings,
// test arbitrary endpoints or see the Authorization header. A content script may only ask
// "classify these texts with the saved settings" while the user's analysis of its tab runs,
// within the server's limits, and report that analysis' progress (lib/trust.js).
import { ApiError, classify, prepareTexts, requestCredential, sendFeedback, testConnection }
  from "./lib/api.js";
import { feedbackBody, labelProblem, rememberBadges, textKey } from "./lib/feedback.js";
import { addCounts, dayKey, pruneHistory } from "./lib/history.js";
import { addToRun, endRun, requireRun, runKey, startRun, takeFromRun } from "./lib/runs.js";
import { dropLegacyClientId, readAuth, readCredential, writeAuth, writeCredential }
  from "./lib/secrets.js";
import { authTransportProblem, DEFAULTS, endpointPattern, loadSettings, normalizeSettings,
  saveSettings, validateEndpoint } from "./lib/settings.js";
import { compileTopics, matchTopics } from "./lib/topics.js";
import { CONTENT_SCRIPT, EXTENSION_PAGE, forbidden, MAX_TEXTS_PER_PAGE, senderKind,
  textsProblem } from "./lib/trust.js";

const MENU_SELECTION = "civicsense-analyze-selection";
const MENU_PAGE = "civicsense-analyze-page";
const EXTENSION_ORIGIN = new URL(chrome.runtime.getURL("")).origin;
const pageKey = (tabId) => `page:${tabId}`;
const contribKey = (tabId) => `contrib:${tabId}`;
const badgesKey = (tabId) => `badges:${tabId}`;

// chrome.storage.session holds page states, addresses and analysis budgets: trusted contexts
// only (Chrome's default, set explicitly so that no later change opens it to content scripts).
chrome.storage.session.setAccessLevel({ accessLevel: "TRUSTED_CONTEXTS" })
  .catch((error) => console.error("CivicSense: session storage access level", error));

/** Earlier versions kept the header in chrome.storage.local, where content scripts can read
 * it: move it to the secret store (only at install/update, so a content script's later
 * write to chrome.storage.local is never taken for the user's header). */
async function migrateAuthHeader() {
  const { settings } = await chrome.storage.local.get("settings");
  if (!settings || typeof settings !== "object" || !("authHeader" in settings)) return;
  const header = String(settings.authHeader ?? "").trim();
  if (header && !(await readAuth()).header) {
    await writeAuth(header, validateEndpoint(settings.endpoint ?? DEFAULTS.endpoint).origin ?? null);
  }
  const { authHeader: _moved, ...rest } = settings;
  await chrome.storage.local.set({ settings: rest });
}

chrome.runtime.onInstalled.addListener(() => {
  migrateAuthHeader().catch((error) => console.error("CivicSense: moving the header", error));
  dropLegacyClientId().catch((error) => console.error("CivicSense: old client id", error));
  chrome.contextMenus.removeAll(() => {
    chrome.contextMenus.create({ id: MENU_SELECTION, title: "CivicSense: analyze",
      contexts: ["selection"] });
    chrome.contextMenus.create({ id: MENU_PAGE, title: "CivicSense: analyze this page",
      contexts: ["page"] });
  });
});

const errorOf = (error) => (error instanceof ApiError ? error.toJSON()
  : { kind: "internal", message: String(error?.message ?? error), status: 0 });

/** The saved settings with the Authorization header, which is sent only to the origin it
 * was saved for (chrome.storage.local, where the endpoint lives, is writable by content
 * scripts; the secret store is not). */
async function loadWorkerSettings() {
  const settings = await loadSettings();
  const auth = await readAuth();
  if (!auth.header) return settings;
  const origin = validateEndpoint(settings.endpoint).origin;
  if (auth.origin !== origin) {
    throw new ApiError("permission", `The Authorization header was saved for ${auth.origin}, ` +
      `but the endpoint is now ${settings.endpoint}: open Options and save the settings again.`);
  }
  return { ...settings, authHeader: auth.header };
}

/** Refuse before any request: an Authorization header over plain http:// to a remote host,
 * or an endpoint the user has not granted. */
async function requireReachable(settings) {
  const insecure = authTransportProblem(settings);
  if (insecure) throw new ApiError("insecure", insecure);
  await requireHostPermission(settings);
}

async function requireHostPermission(settings) {
  const pattern = endpointPattern(settings);
  const granted = pattern && await chrome.permissions.contains({ origins: [pattern] });
  if (!granted) {
    throw new ApiError("permission", `CivicSense may not contact ${settings.endpoint} yet: ` +
      "open Options and save the endpoint to grant access.");
  }
}

/** Classify texts: truncate to maxChars, skip empty ones, batch, attach topics. */
async function classifyTexts(texts, settings = null) {
  settings ??= await loadWorkerSettings();
  await requireReachable(settings);
  const prepared = prepareTexts(texts, settings.maxChars);
  const topics = compileTopics(settings.topics);
  const results = new Array(prepared.length).fill(null);
  const todo = prepared.map((p, i) => i).filter((i) => !prepared[i].empty);
  let modelVersion = null;
  for (let start = 0; start < todo.length; start += settings.batchSize) {
    const idx = todo.slice(start, start + settings.batchSize);
    const answer = await classify(settings, idx.map((i) => prepared[i].text));
    modelVersion = answer.modelVersion ?? modelVersion;
    idx.forEach((i, j) => {
      results[i] = { ...answer.results[j], topics: matchTopics(prepared[i].text, topics),
        truncated: prepared[i].truncated, chars: prepared[i].chars,
        modelVersion: answer.modelVersion ?? null };
    });
  }
  return { results, modelVersion, maxChars: settings.maxChars, prepared };
}

// The badges drawn in each tab, as text hashes (lib/feedback.js): what feedback may be about.
let badgesLock = Promise.resolve();
function rememberTabBadges(tabId, prepared, answer) {
  const next = badgesLock.then(async () => {
    const entries = [];
    for (const [i, result] of answer.results.entries()) {
      if (result?.modelVersion) {  // the version that made this badge (its batch's answer)
        entries.push([await textKey(prepared[i].text), result.label, result.modelVersion]);
      }
    }
    const key = badgesKey(tabId);
    const { [key]: known } = await chrome.storage.session.get(key);
    await chrome.storage.session.set({ [key]: rememberBadges(known, entries) });
  });
  badgesLock = next.catch(() => {});
  return next;
}

// One credential request at a time: two quick clicks must not make two installs.
let pendingCredential = null;
function newCredential(settings, origin) {
  pendingCredential ??= requestCredential(settings)
    .then(async (credential) => { await writeCredential(credential, origin); return credential; })
    .finally(() => { pendingCredential = null; });
  return pendingCredential;
}

/** Feedback with this install's credential, asked of the endpoint's server on first use and
 * kept bound to its origin; asked again, once, when the server refuses it (401: expired,
 * revoked, or another server's). */
async function sendWithCredential(settings, body) {
  const origin = validateEndpoint(settings.endpoint).origin;
  const saved = await readCredential();
  if (saved.credential && saved.origin === origin) {
    try {
      return await sendFeedback(settings, body, saved.credential);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) throw error;
    }
  }
  return sendFeedback(settings, body, await newCredential(settings, origin));
}

/** "Wrong?" on a badge of this tab: the reader's label for the text, sent to the configured
 * endpoint with the label and model version the server gave that badge. */
async function sendBadgeFeedback(tabId, rawText, label) {
  const problem = labelProblem(label);
  if (problem) throw forbidden(problem);
  const settings = await loadWorkerSettings();
  await requireReachable(settings);
  const [prepared] = prepareTexts([rawText], settings.maxChars);
  const key = badgesKey(tabId);
  const { [key]: known } = await chrome.storage.session.get(key);
  const badge = !prepared.empty && known?.[await textKey(prepared.text)];
  if (!badge) {
    throw forbidden("feedback goes only with a badge CivicSense drew in this tab");
  }
  const [predictedLabel, modelVersion] = badge;
  const answer = await sendWithCredential(settings, feedbackBody({ text: prepared.text, label,
    predictedLabel, modelVersion }));
  return { label, modelVersion, postKey: answer?.post_key ?? null };
}

async function injectContent(tabId) {
  try {
    await chrome.scripting.executeScript({ target: { tabId }, files: ["content.js"] });
  } catch (error) {
    throw new ApiError("page", "CivicSense can't read this page (browser pages, the Web Store " +
      `and other extensions are off-limits): ${error?.message ?? error}`);
  }
}

/** Inject the content script (once per page) and send it a message. */
async function sendToPage(tabId, message) {
  await injectContent(tabId);
  try {
    return await chrome.tabs.sendMessage(tabId, message);
  } catch {
    // A content script left by an earlier copy of the extension (reloaded or updated) keeps
    // the page's guard but no longer listens: drop the guard and inject again.
    await chrome.scripting.executeScript({ target: { tabId },
      func: () => { delete globalThis.__civicsense; } });
    await injectContent(tabId);
    return chrome.tabs.sendMessage(tabId, message);
  }
}

async function setPageState(tabId, state) {
  await chrome.storage.session.set({ [pageKey(tabId)]: { ...state, at: Date.now() } });
}

async function analyzePage(tabId) {
  const settings = await loadWorkerSettings();
  await requireReachable(settings);
  await startRun(tabId);
  await setPageState(tabId, { state: "running", done: 0, total: 0 });
  try {
    await sendToPage(tabId, { type: "cs:analyze-page", batchSize: settings.batchSize,
      maxChars: settings.maxChars });
  } catch (error) {
    await setPageState(tabId, { state: "error", error: errorOf(error) });
    throw error;
  }
  return {};
}

function readSelection() {
  const active = document.activeElement;
  if (active && (active.tagName === "TEXTAREA" || active.tagName === "INPUT")
      && typeof active.selectionStart === "number" && active.selectionEnd > active.selectionStart) {
    return active.value.slice(active.selectionStart, active.selectionEnd);
  }
  return String(globalThis.getSelection?.() ?? "");
}

async function analyzeSelection(tabId, selectionText = null) {
  let text = selectionText;
  if (text === null) {
    let found;
    try {
      [found] = await chrome.scripting.executeScript({ target: { tabId }, func: readSelection });
    } catch (error) {
      throw new ApiError("page", `CivicSense can't read this page: ${error?.message ?? error}`);
    }
    text = found?.result ?? "";
  }
  if (!String(text).trim()) {
    throw new ApiError("empty", "Nothing selected: select some text on the page first.");
  }
  const answer = await classifyTexts([text]);
  const [result] = answer.results;
  return { result, modelVersion: answer.modelVersion, maxChars: answer.maxChars,
    preview: String(text).replace(/\s+/g, " ").trim().slice(0, 160) };
}

// History updates are serialised: two tabs finishing together must not lose counts.
let historyLock = Promise.resolve();
function recordPage(tabId, url, counts) {
  historyLock = historyLock.then(async () => {
    const day = dayKey();
    const key = contribKey(tabId);
    const { [key]: previous } = await chrome.storage.session.get(key);
    let { history } = await chrome.storage.local.get("history");
    // Analysing the same page again the same day replaces its earlier contribution.
    if (previous && previous.url === url && previous.day === day) {
      history = addCounts(history, day, previous.counts, -1);
    }
    history = pruneHistory(addCounts(history, day, counts), day);
    await chrome.storage.local.set({ history });
    await chrome.storage.session.set({ [key]: { url, day, counts } });
  }).catch((error) => console.error("CivicSense: history update failed", error));
  return historyLock;
}

async function showInPage(tabId, payload) {
  await sendToPage(tabId, { type: "cs:show-selection", ...payload });
}

async function onContextMenu(info, tab) {
  if (!tab?.id || tab.id < 0) return;
  if (info.menuItemId === MENU_PAGE) {
    try {
      await analyzePage(tab.id);
    } catch (error) {
      await setPageState(tab.id, { state: "error", error: errorOf(error) });
      if (error?.kind !== "page") await showInPage(tab.id, { error: errorOf(error) }).catch(() => {});
    }
    return;
  }
  if (info.menuItemId !== MENU_SELECTION) return;
  let payload;
  try {
    payload = await analyzeSelection(tab.id, info.selectionText ?? "");
  } catch (error) {
    payload = { error: errorOf(error) };
  }
  await showInPage(tab.id, payload).catch((e) => console.warn("CivicSense:", e));
}
chrome.contextMenus.onClicked.addListener(onContextMenu);

const count = (value) => Math.min(MAX_TEXTS_PER_PAGE, Math.max(0, Number.parseInt(value, 10) || 0));
const shortText = (value, n) => (typeof value === "string" ? value.slice(0, n) : undefined);

// From our content script (lib/trust.js: any page that took over its renderer can send these).
const contentHandlers = {
  async classify(msg, sender) {
    const problem = textsProblem(msg.texts);
    if (problem) throw forbidden(problem);
    await takeFromRun(sender.tab.id, msg.texts.length);
    const { prepared, ...answer } = await classifyTexts(msg.texts);
    await addToRun(sender.tab.id, answer.results);
    await rememberTabBadges(sender.tab.id, prepared, answer);
    return answer;
  },
  /** The reader clicked "Wrong?" → a label on one of this tab's badges. */
  async feedback(msg, sender) {
    const problem = textsProblem([msg.text]);
    if (problem) throw forbidden(problem);
    return sendBadgeFeedback(sender.tab.id, msg.text, msg.label);
  },
  async "page-progress"(msg, sender) {
    await requireRun(sender.tab.id);
    await setPageState(sender.tab.id, { state: "running", done: count(msg.done),
      total: count(msg.total), adapter: shortText(msg.adapter, 40) });
    return {};
  },
  async "page-done"(msg, sender) {
    const tabId = sender.tab.id;
    const counts = await endRun(tabId);
    const total = count(msg.total);
    const done = count(msg.done);
    await setPageState(tabId, { state: total ? "done" : "empty", done, total, counts,
      adapter: shortText(msg.adapter, 40), truncated: count(msg.truncated),
      skipped: count(msg.skipped), capped: Boolean(msg.capped), cancelled: Boolean(msg.cancelled),
      modelVersion: shortText(msg.modelVersion, 200) });
    if (total && done) await recordPage(tabId, sender.url ?? sender.tab.url, counts);
    return {};
  },
  async "page-error"(msg, sender) {
    const counts = await endRun(sender.tab.id);
    await setPageState(sender.tab.id, { state: "error", done: count(msg.done),
      total: count(msg.total), counts, error: { kind: shortText(msg.error?.kind, 40) ?? "internal",
        message: shortText(msg.error?.message, 500) ?? "CivicSense stopped." } });
    return {};
  },
};

// From the extension's own pages: the popup, the popped-out panel and the options page.
const pageHandlers = {
  async "analyze-page"(msg) {
    return analyzePage(msg.tabId);
  },
  async "analyze-selection"(msg) {
    return analyzeSelection(msg.tabId);
  },
  /** The options form's settings (unsaved) or the saved ones, header included. */
  async "test-connection"(msg) {
    const settings = msg.settings ? normalizeSettings(msg.settings) : await loadWorkerSettings();
    await requireReachable(settings);
    return testConnection(settings);
  },
  /** The settings for the options form, with the header if it belongs to this endpoint. */
  async "get-settings"() {
    const settings = await loadSettings();
    const auth = await readAuth();
    const bound = auth.header && auth.origin === validateEndpoint(settings.endpoint).origin;
    return { settings: { ...settings, authHeader: bound ? auth.header : "" },
      authElsewhere: auth.header && !bound ? auth.origin : null };
  },
  async "save-settings"(msg) {
    const settings = normalizeSettings(msg.settings);
    const endpoint = validateEndpoint(msg.settings?.endpoint);
    if (!endpoint.ok) throw new ApiError("invalid", endpoint.error);
    if (!settings.topics.length) throw new ApiError("invalid", "Keep at least one topic with keywords.");
    await requireReachable(settings);
    const saved = await saveSettings(settings);
    await writeAuth(settings.authHeader, endpoint.origin);
    return { settings: { ...saved, authHeader: settings.authHeader } };
  },
};

const handlersFor = { [EXTENSION_PAGE]: pageHandlers, [CONTENT_SCRIPT]: contentHandlers };

chrome.runtime.onMessage.addListener((msg, sender, sendResponse) => {
  const kind = senderKind(sender, chrome.runtime.id, EXTENSION_ORIGIN);
  const type = typeof msg?.type === "string" ? msg.type : "";
  const known = Object.hasOwn(pageHandlers, type) || Object.hasOwn(contentHandlers, type);
  if (!kind || !known) return false;
  const handlers = handlersFor[kind];
  if (!Object.hasOwn(handlers, type)) {
    sendResponse({ ok: false, error: forbidden(`"${type}" is not for a ${kind}`).toJSON() });
    return false;
  }
  handlers[type](msg, sender).then(
    (value) => sendResponse({ ok: true, ...value }),
    (error) => sendResponse({ ok: false, error: errorOf(error) }),
  );
  return true;
});

// A navigation or a closed tab makes the page's results stale.
chrome.tabs.onUpdated.addListener((tabId, change) => {
  // (A run's budget stays: only our content script, injected on the user's request, which
  // starts a new run, can use it, and pages that navigate in place must not lose it.)
  if (change.status === "loading") chrome.storage.session.remove([pageKey(tabId), badgesKey(tabId)]);
});
chrome.tabs.onRemoved.addListener((tabId) => {
  chrome.storage.session.remove([pageKey(tabId), contribKey(tabId), runKey(tabId),
    badgesKey(tabId)]);
});

// For the tests and for debugging from the service worker console.
globalThis.civicsense = { classifyTexts, analyzePage, analyzeSelection, onContextMenu,
  migrateAuthHeader, readAuth, writeAuth, readCredential, writeCredential };
