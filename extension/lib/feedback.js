// Feedback on a badge ("Wrong?"): the request body, the worker's record of what it badged,
// and the reader's random client id. Pure functions plus Web Crypto: no chrome.* here, so the
// service worker and the Node unit tests share this module.
//
// No post text is kept: the worker remembers only a SHA-256 of each text it badged in a tab
// (with the label and model version the server gave it), so a content script can send
// feedback only on a badge the server really drew, with the server's own label and version.
import { CLASSES } from "./settings.js";

// The server's client-id alphabet and size (civicsense.monitoring.feedback_log.CLIENT_ID).
export const CLIENT_ID = /^[A-Za-z0-9_-]{8,64}$/;
// Badges remembered per tab (content.js draws at most 2000 per analysis).
export const MAX_REMEMBERED = 4000;

/** A fresh random client id: 16 random bytes, base64url (22 characters). */
export function newClientId(random = globalThis.crypto) {
  const bytes = random.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_")
    .replace(/=+$/, "");
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

/** The body of POST /v1/models/<name>/feedback (the server's schema). */
export function feedbackBody({ text, label, predictedLabel, modelVersion, clientId }) {
  return { text, label, predicted_label: predictedLabel, model_version: modelVersion,
    client_id: clientId };
}
