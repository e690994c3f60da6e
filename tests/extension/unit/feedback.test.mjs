// Unit tests of the "Wrong?" feedback helpers (node --test; no browser, no server).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import test from "node:test";

import { ApiError, feedbackUrl, sendFeedback } from "../../../extension/lib/api.js";
import { CLIENT_ID, feedbackBody, labelProblem, newClientId, rememberBadges, textKey }
  from "../../../extension/lib/feedback.js";

test("feedback: client ids are random and fit the server's alphabet", () => {
  const ids = new Set(Array.from({ length: 200 }, () => newClientId()));
  assert.equal(ids.size, 200);
  for (const id of ids) assert.match(id, CLIENT_ID);
});

test("feedback: a text is remembered by its SHA-256 only", async () => {
  const text = "The reform is a disaster";
  assert.equal(await textKey(text), createHash("sha256").update(text).digest("hex"));
});

test("feedback: remembered badges are bounded, the newest kept", () => {
  let known = rememberBadges({}, [["a", "negative", "1+r"], ["b", "neutral", "1+r"]], 3);
  known = rememberBadges(known, [["c", "positive", "2+s"], ["a", "positive", "2+s"]], 3);
  assert.deepEqual(known, { b: ["neutral", "1+r"], c: ["positive", "2+s"], a: ["positive", "2+s"] });
  known = rememberBadges(known, [["d", "neutral", "2+s"]], 3);
  assert.deepEqual(Object.keys(known), ["c", "a", "d"]);
});

test("feedback: labels and the body the server expects", () => {
  assert.equal(labelProblem("negative"), null);
  assert.match(labelProblem("angry"), /one of negative, neutral, positive/);
  assert.deepEqual(feedbackBody({ text: "t", label: "neutral", predictedLabel: "positive",
    modelVersion: "3+abc", clientId: "client-01" }), { text: "t", label: "neutral",
    predicted_label: "positive", model_version: "3+abc", client_id: "client-01" });
  assert.equal(feedbackUrl({ endpoint: "http://127.0.0.1:8080/", modelName: "civicsense sentiment" }),
    "http://127.0.0.1:8080/v1/models/civicsense%20sentiment/feedback");
});

async function answering(status, body, extraHeaders = {}) {
  const seen = [];
  const server = createServer((req, res) => {
    let data = "";
    req.on("data", (chunk) => { data += chunk; });
    req.on("end", () => {
      seen.push({ method: req.method, url: req.url, body: JSON.parse(data) });
      res.writeHead(status, { "Content-Type": "application/json", ...extraHeaders });
      res.end(JSON.stringify(body));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { seen, url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => server.close(resolve)) };
}

test("feedback: sent as one POST; a 429 is a 'busy' error with the server's message", async () => {
  const body = feedbackBody({ text: "t", label: "neutral", predictedLabel: "positive",
    modelVersion: "3+abc", clientId: "client-01" });
  const ok = await answering(200, { accepted: true, post_key: "t0123" });
  try {
    const answer = await sendFeedback({ endpoint: ok.url, modelName: "m" }, body);
    assert.equal(answer.post_key, "t0123");
    assert.deepEqual(ok.seen, [{ method: "POST", url: "/v1/models/m/feedback", body }]);
  } finally {
    await ok.close();
  }
  const busy = await answering(429, { error: "too much feedback from this client: try again in 10 s" },
    { "Retry-After": "10" });
  try {
    await assert.rejects(sendFeedback({ endpoint: busy.url, modelName: "m" }, body), (error) => {
      assert.ok(error instanceof ApiError);
      assert.equal(error.kind, "busy");
      assert.equal(error.status, 429);
      assert.equal(error.message, "Not sent (429): too much feedback from this client: try again in 10 s");
      return true;
    });
  } finally {
    await busy.close();
  }
});
