// Unit tests of the "Wrong?" feedback helpers (node --test; no browser, no server).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import test from "node:test";

import { ApiError, credentialsUrl, feedbackUrl, requestCredential, sendFeedback }
  from "../../../extension/lib/api.js";
import { CREDENTIAL, CREDENTIAL_HEADER, feedbackBody, installIdOf, labelProblem, rememberBadges,
  textKey } from "../../../extension/lib/feedback.js";

// What the server issues (civicsense.serving.credentials.issue): 43 base64url signature chars.
const TOKEN = `cs1.1.0123456789abcdef.1800000000.${"A".repeat(42)}g`;

test("feedback: a credential's shape and the install id it names", () => {
  assert.match(TOKEN, CREDENTIAL);
  assert.equal(installIdOf(TOKEN), "0123456789abcdef");
  for (const bad of ["", "cs1.1.0123456789abcdef.1800000000", `cs2${TOKEN.slice(3)}`,
    TOKEN.replace("0123456789abcdef", "sockpuppet_00000"), `${TOKEN}.x`]) {
    assert.equal(installIdOf(bad), null, bad);
  }
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
    modelVersion: "3+abc" }), { text: "t", label: "neutral", predicted_label: "positive",
    model_version: "3+abc" });
  assert.equal(feedbackUrl({ endpoint: "http://127.0.0.1:8080/", modelName: "civicsense sentiment" }),
    "http://127.0.0.1:8080/v1/models/civicsense%20sentiment/feedback");
});

async function answering(status, body, extraHeaders = {}) {
  const seen = [];
  const server = createServer((req, res) => {
    let data = "";
    req.on("data", (chunk) => { data += chunk; });
    req.on("end", () => {
      seen.push({ method: req.method, url: req.url, body: data ? JSON.parse(data) : null,
        credential: req.headers[CREDENTIAL_HEADER.toLowerCase()] ?? null });
      res.writeHead(status, { "Content-Type": "application/json", ...extraHeaders });
      res.end(JSON.stringify(body));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { seen, url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => server.close(resolve)) };
}

test("feedback: sent as one POST with the credential; a 429 is a 'busy' error with the server's message", async () => {
  const body = feedbackBody({ text: "t", label: "neutral", predictedLabel: "positive",
    modelVersion: "3+abc" });
  const ok = await answering(200, { accepted: true, post_key: "t0123" });
  try {
    const answer = await sendFeedback({ endpoint: ok.url, modelName: "m" }, body, TOKEN);
    assert.equal(answer.post_key, "t0123");
    assert.deepEqual(ok.seen, [{ method: "POST", url: "/v1/models/m/feedback", body,
      credential: TOKEN }]);
  } finally {
    await ok.close();
  }
  const busy = await answering(429, { error: "too much feedback from this client: try again in 10 s" },
    { "Retry-After": "10" });
  try {
    await assert.rejects(sendFeedback({ endpoint: busy.url, modelName: "m" }, body, TOKEN), (error) => {
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

test("feedback: a credential is asked for with an empty POST; a malformed one is refused", async () => {
  assert.equal(credentialsUrl({ endpoint: "http://127.0.0.1:8080/x/" }),
    "http://127.0.0.1:8080/x/v1/credentials");
  const ok = await answering(200, { credential: TOKEN, install_id: "0123456789abcdef" });
  try {
    assert.equal(await requestCredential({ endpoint: ok.url }), TOKEN);
    assert.deepEqual(ok.seen, [{ method: "POST", url: "/v1/credentials", body: null,
      credential: null }]);
  } finally {
    await ok.close();
  }
  const odd = await answering(200, { credential: "sockpuppet_0000" });
  try {
    await assert.rejects(requestCredential({ endpoint: odd.url }), /credential is malformed/);
  } finally {
    await odd.close();
  }
  const busy = await answering(429, { error: "too many credentials for 127.0.0.1: try again in 600 s" });
  try {
    await assert.rejects(requestCredential({ endpoint: busy.url }), (error) => error.kind === "busy"
      && error.message === "Not sent (429): too many credentials for 127.0.0.1: try again in 600 s");
  } finally {
    await busy.close();
  }
});
