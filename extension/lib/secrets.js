// The Authorization header's and the feedback credential's store: IndexedDB of the extension's own origin. Content scripts
// share chrome.storage with the extension but run in the page's origin, so they cannot open
// this database. It persists like chrome.storage.local (until the extension is removed).
// Only the service worker imports this module.

const DATABASE = "civicsense-secrets";
const STORE = "secrets";
const AUTH = "auth";

function openDatabase() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DATABASE, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function inStore(mode, action) {
  const db = await openDatabase();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = action(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

/**
 * The saved header and the endpoint origin it was saved for: {header, origin}, or
 * {header: "", origin: null} when there is none. The worker sends the header only to that
 * origin, so rewriting the endpoint in chrome.storage.local (which a content script can do)
 * does not redirect the secret.
 */
export async function readAuth() {
  const value = await inStore("readonly", (store) => store.get(AUTH));
  if (!value || typeof value.header !== "string" || !value.header) return { header: "", origin: null };
  return { header: value.header, origin: String(value.origin ?? "") };
}

/** Save (or, for an empty header, delete) the header, bound to `origin`. */
export async function writeAuth(header, origin) {
  const clean = String(header ?? "").trim();
  await inStore("readwrite", (store) => (clean ? store.put({ header: clean, origin }, AUTH)
    : store.delete(AUTH)));
}

const CREDENTIAL = "credential";
const LEGACY_CLIENT_ID = "client-id";  // versions before credentials kept a random id here

/**
 * The reader's feedback credential and the endpoint origin whose server issued it:
 * {credential, origin}, or {credential: "", origin: null}. Kept here, where a page cannot read
 * it to send feedback in the reader's name; sent only to that origin.
 */
export async function readCredential() {
  const value = await inStore("readonly", (store) => store.get(CREDENTIAL));
  if (!value || typeof value.credential !== "string" || !value.credential) {
    return { credential: "", origin: null };
  }
  return { credential: value.credential, origin: String(value.origin ?? "") };
}

/** Save (or, for an empty one, delete) the credential, bound to `origin`. */
export async function writeCredential(credential, origin) {
  const clean = String(credential ?? "").trim();
  await inStore("readwrite", (store) => (clean ? store.put({ credential: clean, origin }, CREDENTIAL)
    : store.delete(CREDENTIAL)));
}

/** Forget the random client id of earlier versions: the server no longer takes it. */
export async function dropLegacyClientId() {
  await inStore("readwrite", (store) => store.delete(LEGACY_CLIENT_ID));
}
