// CivicSense service worker: every network call happens here (KServe sends no CORS headers,
// so a content script's fetch would be blocked), only to the configured endpoint, and only
// when the user asks (popup buttons or the context menu).
import { ApiError, classify, prepareTexts, testConnection } from "./lib/api.js";
import { addCounts, dayKey, pruneHistory } from "./lib/history.js";
import { endpointPattern, loadSettings, normalizeSettings } from "./lib/settings.js";
import { compileTopics, matchTopics } from "./lib/topics.js";

const MENU_SELECTION = "civicsense-analyze-selection";
const MENU_PAGE = "civicsense-analyze-page";
const pageKey = (tabId) => `page:${tabId}`;
const contribKey = (tabId) => `contrib:${tabId}`;

chrome.runtime.onInstalled.addListener(() => {
  chrome.contextMenus.removeAll(() => {
    chrome.contextMenus.create({ id: MENU_SELECTION, title: "CivicSense: analyze",
      contexts: ["selection"] });
    chrome.contextMenus.create({ id: MENU_PAGE, title: "CivicSense: analyze this page",
      contexts: ["page"] });
  });
});

const errorOf = (error) => (error instanceof ApiError ? error.toJSON()
  : { kind: "internal", message: String(error?.message ?? error), status: 0 });

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
  settings ??= await loadSettings();
  await requireHostPermission(settings);
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
        truncated: prepared[i].truncated, chars: prepared[i].chars };
    });
  }
  return { results, modelVersion, maxChars: settings.maxChars };
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
  const settings = await loadSettings();
  await requireHostPermission(settings);
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

const handlers = {
  // From the content script.
  async classify(msg) {
    return classifyTexts(msg.texts);
  },
  async "page-progress"(msg, sender) {
    await setPageState(sender.tab.id, { state: "running", done: msg.done, total: msg.total,
      adapter: msg.adapter });
    return {};
  },
  async "page-done"(msg, sender) {
    const tabId = sender.tab.id;
    const state = msg.total ? "done" : "empty";
    await setPageState(tabId, { state, done: msg.done, total: msg.total, counts: msg.counts,
      adapter: msg.adapter, truncated: msg.truncated, skipped: msg.skipped, capped: msg.capped,
      cancelled: msg.cancelled, modelVersion: msg.modelVersion });
    if (msg.total && msg.done) await recordPage(tabId, sender.url ?? sender.tab.url, msg.counts);
    return {};
  },
  async "page-error"(msg, sender) {
    await setPageState(sender.tab.id, { state: "error", error: msg.error, done: msg.done,
      total: msg.total, counts: msg.counts });
    return {};
  },
  // From the popup and the options page.
  async "analyze-page"(msg) {
    return analyzePage(msg.tabId);
  },
  async "analyze-selection"(msg) {
    return analyzeSelection(msg.tabId);
  },
  async "test-connection"(msg) {
    const settings = normalizeSettings(msg.settings ?? await loadSettings());
    await requireHostPermission(settings);
    return testConnection(settings);
  },
};

chrome.runtime.onMessage.addListener((msg, sender, sendResponse) => {
  if (sender.id !== chrome.runtime.id) return false;
  const handler = handlers[msg?.type];
  if (!handler) return false;
  handler(msg, sender).then(
    (value) => sendResponse({ ok: true, ...value }),
    (error) => sendResponse({ ok: false, error: errorOf(error) }),
  );
  return true;
});

// A navigation or a closed tab makes the page's results stale.
chrome.tabs.onUpdated.addListener((tabId, change) => {
  if (change.status === "loading") chrome.storage.session.remove(pageKey(tabId));
});
chrome.tabs.onRemoved.addListener((tabId) => {
  chrome.storage.session.remove([pageKey(tabId), contribKey(tabId)]);
});

// For the tests and for debugging from the service worker console.
globalThis.civicsense = { classifyTexts, analyzePage, analyzeSelection, onContextMenu };
