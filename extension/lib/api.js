// Talking to the CivicSense model server (KServe V2 or V1). Pure functions plus fetch: no
// chrome.* here, so the service worker and the Node unit tests share this module.
import { CREDENTIAL, CREDENTIAL_HEADER } from "./feedback.js";
import { authTransportProblem, CLASSES } from "./settings.js";

export const REQUEST_TIMEOUT_MS = 30000;

/** A failure the UI can explain: kind is down | timeout | permission | insecure | http | server
 * | protocol. */
export class ApiError extends Error {
  constructor(kind, message, status = 0) {
    super(message);
    this.name = "ApiError";
    this.kind = kind;
    this.status = status;
  }

  toJSON() {
    return { kind: this.kind, message: this.message, status: this.status };
  }
}

const trimSlash = (s) => String(s).replace(/\/+$/, "");

export function inferUrl(settings) {
  const base = trimSlash(settings.endpoint);
  const name = encodeURIComponent(settings.modelName);
  return settings.protocol === "v1"
    ? `${base}/v1/models/${name}:predict`
    : `${base}/v2/models/${name}/infer`;
}

export function metadataUrl(settings) {
  const base = trimSlash(settings.endpoint);
  const name = encodeURIComponent(settings.modelName);
  return settings.protocol === "v1" ? `${base}/v1/models/${name}` : `${base}/v2/models/${name}`;
}

export function feedbackUrl(settings) {
  const base = trimSlash(settings.endpoint);
  return `${base}/v1/models/${encodeURIComponent(settings.modelName)}/feedback`;
}

export function credentialsUrl(settings) {
  return `${trimSlash(settings.endpoint)}/v1/credentials`;
}

/** Request headers; refuses (ApiError "insecure") an Authorization header over plain http://
 * to anything but loopback, so no request carries it there. */
export function headers(settings, json = true) {
  const problem = authTransportProblem(settings);
  if (problem) throw new ApiError("insecure", problem);
  const h = { Accept: "application/json" };
  if (json) h["Content-Type"] = "application/json";
  if (settings.authHeader) h.Authorization = settings.authHeader;
  return h;
}

export function requestBody(protocol, texts) {
  if (protocol === "v1") return { instances: texts };
  return { inputs: [{ name: "text", datatype: "BYTES", shape: [texts.length], data: texts }] };
}

/** Whitespace-normalise and cut texts to maxChars; empty texts are marked to skip. */
export function prepareTexts(texts, maxChars) {
  return texts.map((raw) => {
    const clean = String(raw ?? "").replace(/\s+/g, " ").trim();
    const chars = [...clean];
    const truncated = chars.length > maxChars;
    return { text: truncated ? chars.slice(0, maxChars).join("") : clean, truncated,
      chars: chars.length, empty: clean.length === 0 };
  });
}

function toProbabilities(value) {
  if (Array.isArray(value)) {
    return Object.fromEntries(CLASSES.map((c, i) => [c, Number(value[i])]));
  }
  if (value && typeof value === "object") {
    return Object.fromEntries(CLASSES.map((c) => [c, Number(value[c])]));
  }
  throw new ApiError("protocol", "The server's answer has no probabilities");
}

function toLabel(label, probabilities) {
  if (typeof label === "number" && CLASSES[label]) return CLASSES[label];
  if (typeof label === "string" && CLASSES.includes(label.toLowerCase())) return label.toLowerCase();
  // No usable label: fall back to the most probable class.
  return CLASSES.reduce((a, b) => (probabilities[b] > probabilities[a] ? b : a));
}

function checkProbabilities(p) {
  for (const c of CLASSES) {
    if (!Number.isFinite(p[c])) {
      throw new ApiError("protocol", `The server's answer has no probability for "${c}"`);
    }
  }
  return p;
}

/** Parse an infer/predict answer into [{label, probabilities: {negative, neutral, positive}}]. */
export function parseResponse(protocol, body, n) {
  if (!body || typeof body !== "object") {
    throw new ApiError("protocol", "The server's answer is not JSON");
  }
  let results;
  if (protocol === "v1") {
    if (!Array.isArray(body.predictions)) {
      throw new ApiError("protocol", 'The server\'s answer has no "predictions" (is it V2?)');
    }
    results = body.predictions.map((p) => {
      const probabilities = checkProbabilities(toProbabilities(p?.probabilities));
      return { label: toLabel(p?.label, probabilities), probabilities };
    });
  } else {
    if (!Array.isArray(body.outputs)) {
      throw new ApiError("protocol", 'The server\'s answer has no "outputs" (is it V1?)');
    }
    const byName = Object.fromEntries(body.outputs.map((o) => [o.name, o]));
    const probs = byName.probabilities;
    if (!probs || !Array.isArray(probs.data)) {
      throw new ApiError("protocol", 'The server\'s answer has no "probabilities" output');
    }
    const flat = probs.data.flat(2);
    const labels = byName.label?.data ?? [];
    results = [];
    for (let i = 0; i * 3 < flat.length; i += 1) {
      const probabilities = checkProbabilities(toProbabilities(flat.slice(i * 3, i * 3 + 3)));
      results.push({ label: toLabel(labels[i], probabilities), probabilities });
    }
  }
  if (results.length !== n) {
    throw new ApiError("protocol", `Sent ${n} texts but the server answered ${results.length}`);
  }
  return { results, modelVersion: body.model_version ?? null };
}

async function errorMessage(response) {
  let text = "";
  try {
    text = await response.text();
  } catch {
    return response.statusText || "no details";
  }
  try {
    const body = JSON.parse(text);
    const msg = body.error ?? body.detail ?? body.message;
    if (msg) return typeof msg === "string" ? msg : JSON.stringify(msg);
  } catch {
    // not JSON: use the text itself
  }
  return text.trim().slice(0, 300) || response.statusText || "no details";
}

/** fetch with a timeout; network failures become ApiError("down"). */
export async function call(url, init, { fetchImpl = fetch, timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  let response;
  try {
    // No redirects: a redirect could carry the Authorization header to another origin or
    // to plain http://, past the checks made on the configured endpoint.
    response = await fetchImpl(url, { ...init, signal: controller.signal, credentials: "omit",
      cache: "no-store", redirect: "manual" });
  } catch (error) {
    const origin = new URL(url).origin;
    if (error?.name === "AbortError") {
      throw new ApiError("timeout", `The server at ${origin} did not answer within ` +
        `${Math.round(timeoutMs / 1000)} s`);
    }
    throw new ApiError("down", `Can't reach the CivicSense server at ${origin}. Is it running? ` +
      "Check the endpoint in Options.");
  } finally {
    clearTimeout(timer);
  }
  if (response.type === "opaqueredirect" || (response.status >= 300 && response.status < 400)) {
    throw new ApiError("http", `The server at ${new URL(url).origin} answered with a redirect, ` +
      "which CivicSense does not follow: set the endpoint to the final address in Options.",
    response.status);
  }
  if (!response.ok) {
    const message = await errorMessage(response);
    const kind = response.status >= 500 ? "server" : "http";
    const hint = response.status === 401 || response.status === 403
      ? " (check the Authorization header in Options)" : "";
    throw new ApiError(kind, `The server answered ${response.status}: ${message}${hint}`,
      response.status);
  }
  try {
    return await response.json();
  } catch {
    throw new ApiError("protocol", "The server's answer is not JSON");
  }
}

/** Classify texts (already prepared, none empty) in one request. */
export async function classify(settings, texts, options = {}) {
  const body = await call(inferUrl(settings), {
    method: "POST",
    headers: headers(settings),
    body: JSON.stringify(requestBody(settings.protocol, texts)),
  }, options);
  return parseResponse(settings.protocol, body, texts.length);
}

/** A 429 as an ApiError("busy") with the server's message, which says when to try again. */
function busy(error) {
  if (!(error instanceof ApiError) || error.status !== 429) return error;
  const detail = error.message.replace(/^The server answered 429: /, "");
  return new ApiError("busy", `Not sent (429): ${detail}`, 429);
}

/** A new credential for this install from the server (POST /v1/credentials). */
export async function requestCredential(settings, options = {}) {
  let answer;
  try {
    answer = await call(credentialsUrl(settings), { method: "POST",
      headers: headers(settings, false) }, options);
  } catch (error) {
    throw busy(error);
  }
  if (!CREDENTIAL.test(String(answer?.credential ?? ""))) {
    throw new ApiError("protocol", "The server's credential is malformed");
  }
  return answer.credential;
}

/** Send one reader's feedback on a badge (the body from lib/feedback.js: feedbackBody) with
 * this install's credential. A 429 is an ApiError("busy"); a refused credential a 401. */
export async function sendFeedback(settings, body, credential, options = {}) {
  try {
    return await call(feedbackUrl(settings), { method: "POST",
      headers: { ...headers(settings), [CREDENTIAL_HEADER]: credential },
      body: JSON.stringify(body) }, options);
  } catch (error) {
    throw busy(error);
  }
}

/** Split a version tag "3+<run id>" into its parts. */
export function splitVersion(tag) {
  if (tag === null || tag === undefined) return { version: null, runId: null };
  const [version, runId] = String(tag).split("+", 2);
  return { version, runId: runId ?? null };
}

/** Metadata first (V2 lists the version); else one probe text (fixed, never page text). */
export async function testConnection(settings, options = {}) {
  const meta = await call(metadataUrl(settings), { method: "GET", headers: headers(settings, false) },
    options);
  let tag = (Array.isArray(meta?.versions) && meta.versions[0]) || meta?.model_version
    || meta?.version || null;
  if (!tag) {
    const probe = await classify(settings, ["CivicSense connection test"], options);
    tag = probe.modelVersion;
  }
  return { model: meta?.name ?? settings.modelName, ready: meta?.ready ?? true,
    protocol: settings.protocol, versionTag: tag, ...splitVersion(tag) };
}
