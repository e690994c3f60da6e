// Feedback on a badge ("Wrong?"): the request body, the worker's record of what it badged,
// and the shape of the reader's credential. Pure functions plus Web Crypto: no chrome.* here,
// so the service worker and the Node unit tests share this module.
//
// The server takes feedback only with a credential it issued to this install (POST
// /v1/credentials) and signed; the worker asks for one on the first "Wrong?" and keeps it in
// its secret store (lib/secrets.js), where pages cannot read it.
//
// No post text is kept: the worker remembers only a SHA-256 of each text it badged in a tab
// (with the label and model version the server gave it), so a content script can send
// feedback only on a badge the server really drew, with the server's own label and version.
import { CLASSES } from "./settings.js";

// The header the server reads the credential from (civicsense.serving.credentials.HEADER).
export const CREDENTIAL_HEADER = "X-CivicSense-Credential";
// cs1.<key id>.<install id: 16 hex>.<issued at: Unix seconds>.<HMAC-SHA256, base64url>.
export const CREDENTIAL = /^cs1\.[A-Za-z0-9_-]{1,16}\.[0-9a-f]{16}\.[0-9]{1,12}\.[A-Za-z0-9_-]{43}$/;
// Badges remembered per tab (content.js draws at most 2000 per analysis).
export const MAX_REMEMBERED = 4000;

/** The install id a credential names (its third part), or null for anything else. */
export function installIdOf(credential) {
  return CREDENTIAL.test(String(credential ?? "")) ? String(credential).split(".")[2] : null;
}

/** The hex SHA-256 of a text: how the worker remembers a badge without keeping its text. */
export async function textKey(text) {
  const digest = await globalThis.crypto.subtle.digest("SHA-256",
    new TextEncoder().encode(String(text)));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The remembered badges plus these ({key: [label, modelVersion]}), the oldest dropped
 * beyond MAX_REMEMBERED. */
export function rememberBadges(known, entries, max = MAX_REMEMBERED) {
  const merged = { ...(known ?? {}) };
  for (const [key, label, version] of entries) {
    delete merged[key];
    merged[key] = [label, version];
  }
  const keys = Object.keys(merged);
  for (const key of keys.slice(0, Math.max(0, keys.length - max))) delete merged[key];
  return merged;
}

/** null if `label` is a label a reader may choose, else why not. */
export function labelProblem(label) {
  return CLASSES.includes(label) ? null : `the label must be one of ${CLASSES.join(", ")}`;
}

/** The body of POST /v1/models/<name>/feedback (the server's schema). No client id: the
 * server takes the reader's identity from the credential. */
export function feedbackBody({ text, label, predictedLabel, modelVersion }) {
  return { text, label, predicted_label: predictedLabel, model_version: modelVersion };
}
