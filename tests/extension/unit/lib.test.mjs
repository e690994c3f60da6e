// Unit tests of the extension's pure modules (node --test; no browser, no server).
import assert from "node:assert/strict";
import { createServer } from "node:http";
import test from "node:test";

import { ApiError, call, classify, headers, parseResponse, prepareTexts, requestBody,
  splitVersion, testConnection } from "../../../extension/lib/api.js";
import { addCounts, dayKey, pruneHistory, shiftDay, tally, topicTrend }
  from "../../../extension/lib/history.js";
import { authTransportProblem, DEFAULT_TOPICS, isLoopbackHost, normalizeSettings,
  normalizeTopics, publicSettings, validateEndpoint } from "../../../extension/lib/settings.js";
import { compileTopics, matchTopics } from "../../../extension/lib/topics.js";
import { CONTENT_SCRIPT, EXTENSION_PAGE, MAX_RAW_TEXT_CHARS, MAX_TEXTS_PER_REQUEST, senderKind,
  textsProblem } from "../../../extension/lib/trust.js";

const topics = compileTopics(DEFAULT_TOPICS);

test("topics: whole words, prefixes, hashtags, curly apostrophes", () => {
  assert.deepEqual(matchTopics("The abortion ban", topics), ["abortion"]);
  assert.deepEqual(matchTopics("Abortions rose", topics), ["abortion"]);
  assert.deepEqual(matchTopics("A feminist reading", topics), ["feminism"]);
  assert.deepEqual(matchTopics("Women’s rights now", topics), ["feminism"]);
  assert.deepEqual(matchTopics("#MeToo marches", topics), ["feminism"]);
  assert.deepEqual(matchTopics("My godfather's votes", topics), ["elections"]);
  assert.deepEqual(matchTopics("Fossil   fuels and the ballot", topics), ["climate", "elections"]);
  assert.deepEqual(matchTopics("Nothing here at all", topics), []);
});

test("settings: endpoint validation and normalisation", () => {
  assert.equal(validateEndpoint("http://127.0.0.1:8080/").url, "http://127.0.0.1:8080");
  assert.equal(validateEndpoint("https://kserve.example.org/ns/").pattern,
    "https://kserve.example.org/*");
  assert.equal(validateEndpoint("ftp://x").ok, false);
  assert.equal(validateEndpoint("http://user:pw@x").ok, false);
  const s = normalizeSettings({ protocol: "v9", batchSize: "9999", maxChars: "10" });
  assert.equal(s.protocol, "v2");
  assert.equal(s.batchSize, 256);
  assert.equal(s.maxChars, 50);
  assert.deepEqual(normalizeTopics([{ name: "Tax", keywords: " VAT , tax*,, " }, { name: "" }]),
    [{ id: "tax", name: "Tax", keywords: ["vat", "tax*"] }]);
});

test("api: V2 and V1 bodies and answers", () => {
  assert.deepEqual(requestBody("v2", ["a", "b"]),
    { inputs: [{ name: "text", datatype: "BYTES", shape: [2], data: ["a", "b"] }] });
  assert.deepEqual(requestBody("v1", ["a"]), { instances: ["a"] });
  const v2 = parseResponse("v2", { model_version: "3+abc", outputs: [
    { name: "label", data: ["positive", "negative"] },
    { name: "probabilities", shape: [2, 3], data: [0.1, 0.2, 0.7, 0.8, 0.1, 0.1] }] }, 2);
  assert.equal(v2.modelVersion, "3+abc");
  assert.deepEqual(v2.results.map((r) => r.label), ["positive", "negative"]);
  assert.equal(v2.results[1].probabilities.negative, 0.8);
  const v1 = parseResponse("v1", { predictions: [
    { label: "neutral", probabilities: { negative: 0.2, neutral: 0.5, positive: 0.3 } }] }, 1);
  assert.equal(v1.results[0].label, "neutral");
  assert.throws(() => parseResponse("v2", { outputs: [] }, 1), ApiError);
  assert.throws(() => parseResponse("v1", { predictions: [] }, 1), /Sent 1 texts/);
  assert.deepEqual(splitVersion("3+abc"), { version: "3", runId: "abc" });
});

test("api: long texts are cut, empty ones marked", () => {
  const [a, b] = prepareTexts(["x".repeat(30), "  \n "], 10);
  assert.deepEqual([a.text.length, a.truncated, a.chars], [10, true, 30]);
  assert.equal(b.empty, true);
});

test("api: a 4xx carries the server's message; a refused connection is 'down'", async () => {
  const fake = async () => new Response(JSON.stringify({ error: "text too long" }), { status: 400 });
  await assert.rejects(call("http://127.0.0.1:1/x", {}, { fetchImpl: fake }),
    (e) => e.kind === "http" && e.status === 400 && /400: text too long/.test(e.message));
  const down = async () => { throw new TypeError("Failed to fetch"); };
  await assert.rejects(call("http://127.0.0.1:1/x", {}, { fetchImpl: down }),
    (e) => e.kind === "down" && /Can't reach/.test(e.message));
});

test("history: counts per topic and day, replace, prune, trend", () => {
  const counts = tally([{ label: "positive", topics: ["climate"] },
    { label: "negative", topics: ["climate", "elections"] }, { label: "neutral", topics: [] }]);
  assert.deepEqual(counts._all, { negative: 1, neutral: 1, positive: 1 });
  const today = "2026-11-23";
  let h = addCounts(undefined, today, counts);
  h = addCounts(h, today, counts, -1);
  assert.deepEqual(h.days, {});
  h = addCounts(h, shiftDay(today, -2), { climate: { negative: 3, neutral: 0, positive: 1 } });
  h = addCounts(h, today, { climate: { negative: 0, neutral: 1, positive: 3 } });
  h = addCounts(h, "2020-01-01", counts);
  h = pruneHistory(h, today);
  assert.deepEqual(Object.keys(h.days).sort(), ["2026-11-21", "2026-11-23"]);
  const trend = topicTrend(h, "climate", today);
  assert.equal(trend.direction, "up");
  assert.deepEqual(trend.sum, { negative: 3, neutral: 1, positive: 4 });
  assert.equal(trend.series.length, 14);
  assert.match(dayKey(new Date(2026, 0, 5)), /^2026-01-05$/);
});

// --- trust boundary -------------------------------------------------------------------------
const ID = "abcdefghijklmnopabcdefghijklmnop";
const ORIGIN = `chrome-extension://${ID}`;

test("trust: extension pages, our content script, and nothing else", () => {
  const kind = (sender) => senderKind(sender, ID, ORIGIN);
  // The action popup (no tab), the popped-out panel and the options page (in a tab).
  assert.equal(kind({ id: ID, url: `${ORIGIN}/popup.html`, origin: ORIGIN }), EXTENSION_PAGE);
  assert.equal(kind({ id: ID, url: `${ORIGIN}/options.html`, origin: ORIGIN, frameId: 0,
    tab: { id: 7 } }), EXTENSION_PAGE);
  // Our content script in a tab's top frame: the page's URL and origin.
  const content = { id: ID, url: "https://news.example/a", origin: "https://news.example",
    frameId: 0, tab: { id: 7 } };
  assert.equal(kind(content), CONTENT_SCRIPT);
  // A page that names our origin in its path or query is still a page.
  assert.equal(kind({ ...content, url: `https://evil.example/${ORIGIN}/options.html` }),
    CONTENT_SCRIPT);
  assert.equal(kind({ ...content, url: `${ORIGIN}/options.html`, origin: "https://evil.example" }),
    CONTENT_SCRIPT);
  // Another extension, a subframe, no tab, no URL: refused.
  assert.equal(kind({ ...content, id: "other" }), null);
  assert.equal(kind({ ...content, frameId: 3 }), null);
  assert.equal(kind({ ...content, tab: undefined }), null);
  assert.equal(kind({ ...content, tab: { id: -1 } }), null);
  assert.equal(kind({ id: ID }), null);
  assert.equal(kind({ id: ID, url: `chrome-extension://${"z".repeat(32)}/options.html` }), null);
  assert.equal(kind(undefined), null);
});

test("trust: what a content script may have classified", () => {
  assert.equal(textsProblem(["a post", "another"]), null);
  assert.equal(textsProblem(Array(MAX_TEXTS_PER_REQUEST).fill("x")), null);
  assert.match(textsProblem(Array(MAX_TEXTS_PER_REQUEST + 1).fill("x")), /at most 256 texts/);
  assert.match(textsProblem([]), /non-empty/);
  assert.match(textsProblem("a post"), /non-empty list/);
  assert.match(textsProblem({ length: 1, 0: "x" }), /non-empty list/);
  assert.match(textsProblem(["ok", 42]), /text 1 is not a string/);
  assert.match(textsProblem(["ok", { toString: () => "x" }]), /text 1/);
  assert.equal(textsProblem(["x".repeat(MAX_RAW_TEXT_CHARS)]), null);
  assert.match(textsProblem(["x".repeat(MAX_RAW_TEXT_CHARS + 1)]), /text 0/);
});

test("settings: the Authorization header goes over https:// or to loopback only", () => {
  const host = (url) => isLoopbackHost(new URL(url).hostname);
  for (const url of ["http://127.0.0.1:8080", "http://127.1:8080", "http://127.255.0.9",
    "http://0x7f000001/", "http://LOCALHOST:9/", "http://[::1]:8080", "http://[0:0:0:0:0:0:0:1]/"]) {
    assert.equal(host(url), true, url);
  }
  for (const url of ["http://128.0.0.1", "http://10.0.0.1", "http://0.0.0.0", "http://[::]/",
    "http://localhost.example.org", "http://127.0.0.1.example.org", "http://[::ffff:127.0.0.1]/",
    "http://civicsense.example.org"]) {
    assert.equal(host(url), false, url);
  }
  const auth = "Bearer token";
  assert.equal(authTransportProblem({ endpoint: "https://kserve.example.org", authHeader: auth }), null);
  assert.equal(authTransportProblem({ endpoint: "http://127.0.0.1:8080", authHeader: auth }), null);
  assert.equal(authTransportProblem({ endpoint: "http://[::1]:8080/ns", authHeader: auth }), null);
  assert.equal(authTransportProblem({ endpoint: "http://kserve.example.org", authHeader: "" }), null);
  assert.match(authTransportProblem({ endpoint: "http://kserve.example.org:80/ns", authHeader: auth }),
    /won't send the Authorization header to http:\/\/kserve\.example\.org: over plain http/);
  assert.throws(() => headers({ endpoint: "http://10.1.2.3:8080", authHeader: auth }),
    (e) => e instanceof ApiError && e.kind === "insecure");
  assert.equal(headers({ endpoint: "http://localhost:8080", authHeader: auth }).Authorization, auth);
  // The header never sits in what goes to chrome.storage.local.
  assert.equal("authHeader" in publicSettings({ endpoint: "https://x.org", authHeader: auth }), false);
});

test("api: a refused header means no request at all", async () => {
  const calls = [];
  const fetchImpl = async (url, init) => {
    calls.push([url, init.headers]);
    return new Response(JSON.stringify({ predictions: [
      { label: "neutral", probabilities: { negative: 0.2, neutral: 0.5, positive: 0.3 } }] }));
  };
  const remote = { endpoint: "http://kserve.example.org", protocol: "v1", modelName: "m",
    authHeader: "Bearer t" };
  await assert.rejects(classify(remote, ["a text"], { fetchImpl }), (e) => e.kind === "insecure");
  await assert.rejects(testConnection(remote, { fetchImpl }), (e) => e.kind === "insecure");
  assert.deepEqual(calls, []);
  await classify({ ...remote, authHeader: "" }, ["a text"], { fetchImpl });
  assert.equal(calls.length, 1);
  assert.equal(calls[0][1].Authorization, undefined);
});

/** A real HTTP server on 127.0.0.1 that records each request; `answer(req, res)` replies. */
async function recorder(answer) {
  const seen = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method, url: req.url, authorization: req.headers.authorization });
    req.resume();
    req.on("end", () => answer(req, res));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { seen, url, close: () => new Promise((resolve) => server.close(resolve)) };
}

test("api: the header reaches a server on 127.0.0.1 over plain http", async () => {
  const server = await recorder((req, res) => {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ model_version: "4+run", predictions: [
      { label: "positive", probabilities: { negative: 0.1, neutral: 0.1, positive: 0.8 } }] }));
  });
  try {
    const answer = await classify({ endpoint: server.url, protocol: "v1", modelName: "m",
      authHeader: "Bearer local-token" }, ["a text"]);
    assert.equal(answer.results[0].label, "positive");
    assert.deepEqual(server.seen, [{ method: "POST", url: "/v1/models/m:predict",
      authorization: "Bearer local-token" }]);
  } finally {
    await server.close();
  }
});

test("api: redirects are not followed (they could carry the header elsewhere)", async () => {
  const target = await recorder((req, res) => res.end("{}"));
  const server = await recorder((req, res) => {
    res.writeHead(307, { Location: `${target.url}/elsewhere` });
    res.end();
  });
  try {
    await assert.rejects(classify({ endpoint: server.url, protocol: "v1", modelName: "m",
      authHeader: "Bearer t" }, ["a text"]),
    (e) => e.kind === "http" && e.status === 307 && /redirect/.test(e.message));
    assert.equal(server.seen.length, 1);
    assert.deepEqual(target.seen, []);
  } finally {
    await Promise.all([server.close(), target.close()]);
  }
});
