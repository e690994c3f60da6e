// Who may ask the service worker what: extension pages versus content scripts (pure, no
// chrome.* here, so the Node unit tests check the same rules the service worker applies).
//
// A content script runs in the page's renderer process. If a hostile page takes that process
// over, it can send any message a content script can, so content-script messages are data to
// check, never commands to trust. The sender fields checked here are set by the browser, not
// by the sender.
import { ApiError } from "./api.js";

// The server's default `--max-batch` (civicsense serve): at most this many texts per message.
export const MAX_TEXTS_PER_REQUEST = 256;
// content.js badges at most this many posts per page; one analysis may classify no more.
export const MAX_TEXTS_PER_PAGE = 2000;
// Raw text per post, before the worker cuts it to the "Longest text" setting (at most 20,000
// characters): content.js cuts longer posts to this first, so a message stays small.
export const MAX_RAW_TEXT_CHARS = 100000;

export const EXTENSION_PAGE = "extension-page";
export const CONTENT_SCRIPT = "content-script";

/**
 * What kind of context sent a runtime message: EXTENSION_PAGE (the popup, the popped-out
 * panel, the options page: a document of the extension's own origin), CONTENT_SCRIPT (our
 * script in a tab's top frame) or null (anything else: refuse).
 */
export function senderKind(sender, runtimeId, extensionOrigin) {
  if (!sender || sender.id !== runtimeId || typeof sender.url !== "string") return null;
  const ownDocument = sender.url.startsWith(`${extensionOrigin}/`)
    && (sender.origin === undefined || sender.origin === extensionOrigin);
  if (ownDocument) return EXTENSION_PAGE;
  const tabId = sender.tab?.id;
  if (Number.isInteger(tabId) && tabId >= 0 && sender.frameId === 0) return CONTENT_SCRIPT;
  return null;
}

/** null if `texts` is a batch a content script may have classified, else why not. */
export function textsProblem(texts) {
  if (!Array.isArray(texts) || texts.length === 0) return "texts must be a non-empty list";
  if (texts.length > MAX_TEXTS_PER_REQUEST) {
    return `at most ${MAX_TEXTS_PER_REQUEST} texts per request, got ${texts.length}`;
  }
  const bad = texts.findIndex((t) => typeof t !== "string" || t.length > MAX_RAW_TEXT_CHARS);
  if (bad >= 0) {
    return `text ${bad} is not a string of at most ${MAX_RAW_TEXT_CHARS} characters`;
  }
  return null;
}

/** The error a refused request gets (kind "forbidden"). */
export function forbidden(why) {
  return new ApiError("forbidden", `CivicSense refused the request: ${why}.`);
}
