// Unit tests of the extension's pure modules (node --test; no browser, no server).
import assert from "node:assert/strict";
import test from "node:test";

import { ApiError, call, parseResponse, prepareTexts, requestBody, splitVersion }
  from "../../../extension/lib/api.js";
import { addCounts, dayKey, pruneHistory, shiftDay, tally, topicTrend }
  from "../../../extension/lib/history.js";
import { DEFAULT_TOPICS, normalizeSettings, normalizeTopics, validateEndpoint }
  from "../../../extension/lib/settings.js";
import { compileTopics, matchTopics } from "../../../extension/lib/topics.js";

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
