// Options: endpoint, protocol, model, Authorization header, limits, topics; test connection.
// Settings are read and saved through the service worker, which alone holds the header.
import { authTransportProblem, DEFAULT_TOPICS, DEFAULTS, LIMITS, normalizeSettings,
  normalizeTopics, validateEndpoint } from "./lib/settings.js";
import { h } from "./lib/ui.js";

const $ = (id) => document.getElementById(id);
let topicCounter = 0;

function status(id, text, kind = "") {
  $(id).textContent = text;
  $(id).className = kind;
}

function topicRow(topic = { name: "", keywords: [] }) {
  topicCounter += 1;
  const n = topicCounter;
  const name = h("input", { type: "text", id: `topic-name-${n}`, class: "topic-name",
    value: topic.name, maxlength: 60, placeholder: "Topic" });
  const keywords = h("textarea", { id: `topic-keywords-${n}`, class: "topic-keywords",
    placeholder: "keyword, another keyword, prefix*", spellcheck: "false" });
  keywords.value = topic.keywords.join(", ");
  const remove = h("button", { type: "button", class: "remove-topic", text: "Remove",
    "aria-label": `Remove topic ${topic.name}` });
  const row = h("div", { class: "topic-row", dataset: { id: topic.id ?? "" } },
    h("div", {}, h("label", { for: name.id, text: "Name" }), name),
    h("div", {}, h("label", { for: keywords.id, text: "Keywords" }), keywords),
    remove);
  remove.addEventListener("click", () => row.remove());
  return row;
}

function renderTopics(topics) {
  $("topics").replaceChildren(...topics.map(topicRow));
}

function fill(settings) {
  $("endpoint").value = settings.endpoint;
  $(`protocol-${settings.protocol}`).checked = true;
  $("modelName").value = settings.modelName;
  $("authHeader").value = settings.authHeader;
  $("batchSize").value = settings.batchSize;
  $("maxChars").value = settings.maxChars;
  renderTopics(settings.topics);
}

function readForm() {
  const topics = [...document.querySelectorAll(".topic-row")].map((row) => ({
    id: row.dataset.id || undefined,
    name: row.querySelector(".topic-name").value,
    keywords: row.querySelector(".topic-keywords").value.split(","),
  }));
  return {
    endpoint: $("endpoint").value,
    protocol: document.querySelector("input[name=protocol]:checked")?.value ?? "v2",
    modelName: $("modelName").value,
    authHeader: $("authHeader").value,
    batchSize: $("batchSize").value,
    maxChars: $("maxChars").value,
    topics: normalizeTopics(topics),
  };
}

/** Validate the endpoint and get host permission for it (call inside a click). */
async function checkEndpoint() {
  const v = validateEndpoint($("endpoint").value);
  $("endpoint").setAttribute("aria-invalid", String(!v.ok));
  if (!v.ok) return { ok: false, error: v.error };
  if (!(await chrome.permissions.contains({ origins: [v.pattern] }))) {
    let granted = false;
    try {
      granted = await chrome.permissions.request({ origins: [v.pattern] });
    } catch (error) {
      return { ok: false, error: `Permission request failed: ${error.message}` };
    }
    if (!granted) {
      return { ok: false, error: `Permission to contact ${v.origin} was not granted: CivicSense ` +
        "can't call this endpoint." };
    }
  }
  return v;
}

/** Why the form's header can't go to the form's endpoint (plain http:// to a remote host). */
function insecureAuth() {
  const problem = authTransportProblem({ endpoint: $("endpoint").value,
    authHeader: $("authHeader").value });
  $("authHeader").setAttribute("aria-invalid", String(Boolean(problem)));
  return problem;
}

async function save(event) {
  event.preventDefault();
  status("save-result", "");
  const form = readForm();
  if (!form.topics.length) return status("save-result", "Keep at least one topic with keywords.", "error");
  // Before asking for the host permission: no point granting an endpoint we won't use.
  const insecure = validateEndpoint(form.endpoint).ok && insecureAuth();
  if (insecure) return status("save-result", insecure, "error");
  const checked = await checkEndpoint();
  if (!checked.ok) return status("save-result", checked.error, "error");
  const answer = await chrome.runtime.sendMessage({ type: "save-settings", settings: form });
  if (!answer?.ok) return status("save-result", answer?.error?.message ?? "Not saved", "error");
  fill(answer.settings);
  status("save-result", "Saved.", "ok");
}

async function testConnection() {
  status("test-result", "Testing…");
  $("test").disabled = true;
  try {
    const insecure = validateEndpoint($("endpoint").value).ok && insecureAuth();
    if (insecure) return status("test-result", insecure, "error");
    const checked = await checkEndpoint();
    if (!checked.ok) return status("test-result", checked.error, "error");
    const settings = normalizeSettings(readForm());
    const answer = await chrome.runtime.sendMessage({ type: "test-connection", settings });
    if (!answer?.ok) return status("test-result", answer?.error?.message ?? "No answer", "error");
    const version = answer.version ? `version ${answer.version}` : "unknown version";
    const run = answer.runId ? ` (run ${answer.runId.slice(0, 8)})` : "";
    status("test-result", `Connected: ${answer.model} ${version}${run}, ${settings.protocol.toUpperCase()}.`, "ok");
  } finally {
    $("test").disabled = false;
  }
}

async function main() {
  const loaded = await chrome.runtime.sendMessage({ type: "get-settings" });
  fill(loaded?.settings ?? normalizeSettings({}));
  if (!loaded?.ok) {
    status("save-result", loaded?.error?.message ?? "Could not read the settings", "error");
  } else if (loaded.authElsewhere) {
    status("save-result", `An Authorization header is saved for ${loaded.authElsewhere}, not ` +
      "for this endpoint: enter it again and save to use it here.", "error");
  }
  $("form").addEventListener("submit", save);
  $("test").addEventListener("click", testConnection);
  $("add-topic").addEventListener("click", () => {
    if (document.querySelectorAll(".topic-row").length >= LIMITS.topics) {
      return status("save-result", `At most ${LIMITS.topics} topics.`, "error");
    }
    const row = topicRow();
    $("topics").append(row);
    row.querySelector("input").focus();
  });
  $("reset-topics").addEventListener("click", () => renderTopics(structuredClone(DEFAULT_TOPICS)));
  $("show-auth").addEventListener("click", () => {
    const shown = $("authHeader").type === "text";
    $("authHeader").type = shown ? "password" : "text";
    $("show-auth").textContent = shown ? "Show" : "Hide";
    $("show-auth").setAttribute("aria-pressed", String(!shown));
  });
  $("clear-history").addEventListener("click", async () => {
    await chrome.storage.local.remove("history");
    status("history-result", "History cleared.", "ok");
  });
  $("endpoint").placeholder = DEFAULTS.endpoint;
  document.body.dataset.ready = "true";
}

main();
