// Settings: defaults, validation and storage (chrome.storage.local only: nothing syncs).
// The Authorization header is never kept here: content scripts can read (and write)
// chrome.storage.local, so the service worker keeps it apart (lib/secrets.js).

export const CLASSES = Object.freeze(["negative", "neutral", "positive"]);

// The social-reform topics shown by default. Keywords are case-insensitive whole words;
// a trailing * matches any ending (feminis* → feminism, feminist).
export const DEFAULT_TOPICS = Object.freeze([
  {
    id: "abortion",
    name: "Abortion",
    keywords: ["abortion*", "pro-life", "prolife", "pro-choice", "prochoice", "roe v wade",
      "roe v. wade", "planned parenthood", "unborn", "fetus", "reproductive rights",
      "bodily autonomy"],
  },
  {
    id: "climate",
    name: "Climate",
    keywords: ["climate", "global warming", "carbon", "emissions", "fossil fuel*", "renewable*",
      "greenhouse", "paris agreement", "net zero", "heatwave*", "solar", "wind farm*"],
  },
  {
    id: "feminism",
    name: "Feminism",
    keywords: ["feminis*", "gender equality", "women's rights", "misogyn*", "patriarchy",
      "equal pay", "gender pay gap", "#metoo", "metoo", "sexism", "sexist"],
  },
  {
    id: "religion",
    name: "Atheism/religion",
    keywords: ["atheis*", "religion*", "religious", "god", "church*", "faith", "secular*",
      "bible", "prayer*", "pray", "christian*", "muslim*", "islam", "theology"],
  },
  {
    id: "elections",
    name: "Elections",
    keywords: ["election*", "vote", "votes", "voting", "voter*", "ballot*", "candidate*",
      "campaign*", "polling", "democrat*", "republican*", "electoral", "referendum"],
  },
]);

export const DEFAULTS = Object.freeze({
  endpoint: "http://127.0.0.1:8080",
  protocol: "v2",
  modelName: "civicsense-sentiment",
  authHeader: "",
  batchSize: 32,
  maxChars: 2000,
  topics: DEFAULT_TOPICS,
});

export const LIMITS = Object.freeze({
  batchSize: [1, 256],
  maxChars: [50, 20000],
  topics: 12,
  keywordsPerTopic: 100,
});

const clampInt = (value, [lo, hi], fallback) => {
  const n = Number.parseInt(value, 10);
  return Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : fallback;
};

export function slug(name) {
  const s = String(name).toLowerCase().normalize("NFKD").replace(/[^\p{L}\p{N}]+/gu, "-")
    .replace(/^-+|-+$/g, "");
  return s || "topic";
}

/** Check an endpoint base URL; returns {ok, url, origin, pattern} or {ok: false, error}. */
export function validateEndpoint(raw) {
  const text = String(raw ?? "").trim();
  let url;
  try {
    url = new URL(text);
  } catch {
    return { ok: false, error: "Enter a full URL, e.g. http://127.0.0.1:8080" };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return { ok: false, error: "The endpoint must start with http:// or https://" };
  }
  if (url.username || url.password) {
    return { ok: false, error: "Put credentials in the Authorization header, not the URL" };
  }
  const path = url.pathname.replace(/\/+$/, "");
  const base = `${url.protocol}//${url.host}${path}`;
  return { ok: true, url: base, origin: url.origin, pattern: `${url.protocol}//${url.host}/*` };
}

/** Normalise one topic list from storage or the options form; drops empty rows. */
export function normalizeTopics(topics) {
  if (!Array.isArray(topics)) return structuredClone(DEFAULT_TOPICS);
  const seen = new Set();
  const out = [];
  for (const t of topics) {
    if (!t || typeof t !== "object") continue;
    const name = String(t.name ?? "").trim().slice(0, 60);
    const keywords = (Array.isArray(t.keywords) ? t.keywords : String(t.keywords ?? "").split(","))
      .map((k) => String(k).trim().toLowerCase())
      .filter((k) => k && k !== "*")
      .slice(0, LIMITS.keywordsPerTopic);
    if (!name || !keywords.length) continue;
    let id = t.id ? slug(t.id) : slug(name);
    while (seen.has(id)) id += "-2";
    seen.add(id);
    out.push({ id, name, keywords: [...new Set(keywords)] });
    if (out.length >= LIMITS.topics) break;
  }
  return out;
}

export function normalizeSettings(raw) {
  const s = raw && typeof raw === "object" ? raw : {};
  const endpoint = validateEndpoint(s.endpoint ?? DEFAULTS.endpoint);
  return {
    endpoint: endpoint.ok ? endpoint.url : DEFAULTS.endpoint,
    protocol: s.protocol === "v1" ? "v1" : "v2",
    modelName: String(s.modelName ?? "").trim() || DEFAULTS.modelName,
    authHeader: String(s.authHeader ?? "").trim(),
    batchSize: clampInt(s.batchSize, LIMITS.batchSize, DEFAULTS.batchSize),
    maxChars: clampInt(s.maxChars, LIMITS.maxChars, DEFAULTS.maxChars),
    topics: s.topics === undefined ? structuredClone(DEFAULT_TOPICS) : normalizeTopics(s.topics),
  };
}

/** The settings without the secret: what may sit in chrome.storage.local. */
export function publicSettings(settings) {
  const { authHeader: _secret, ...rest } = normalizeSettings(settings);
  return rest;
}

/** The stored settings (no Authorization header: only the service worker can add it). */
export async function loadSettings() {
  const { settings } = await chrome.storage.local.get("settings");
  return { ...normalizeSettings(settings), authHeader: "" };
}

export async function saveSettings(settings) {
  const clean = publicSettings(settings);
  await chrome.storage.local.set({ settings: clean });
  return clean;
}

/** 127.0.0.0/8, localhost and [::1], as the URL parser spells them (127.1 → 127.0.0.1). */
export function isLoopbackHost(hostname) {
  const host = String(hostname ?? "").toLowerCase();
  if (host === "localhost" || host === "[::1]") return true;
  const octets = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  return Boolean(octets) && octets[1] === "127" && octets.slice(2).every((o) => Number(o) <= 255);
}

/**
 * null if the Authorization header may go to this endpoint, else why not. Over plain http://
 * anyone on the way (Wi-Fi, proxy, ISP) can read the header, so it goes only over https://,
 * or over http:// to this computer (loopback), where it never crosses a network.
 */
export function authTransportProblem(settings) {
  if (!String(settings?.authHeader ?? "").trim()) return null;
  let url;
  try {
    url = new URL(String(settings.endpoint));
  } catch {
    return "The endpoint is not a valid URL.";
  }
  if (url.protocol === "https:") return null;
  if (url.protocol === "http:" && isLoopbackHost(url.hostname)) return null;
  return `CivicSense won't send the Authorization header to ${url.origin}: over plain http:// ` +
    "anyone on the network between you and the server can read it. Use an https:// endpoint, " +
    "or a server on this computer (127.0.0.1, localhost, [::1]), or clear the header.";
}

/** The host-permission pattern for the configured endpoint. */
export function endpointPattern(settings) {
  const v = validateEndpoint(settings.endpoint);
  return v.ok ? v.pattern : null;
}
