// The popup: analyze the selection or the page, and the insights panel (this page's split,
// per topic, and the local history with a trend per topic).
import { ALL, TREND_DAYS, topicTrend, total } from "./lib/history.js";
import { endpointPattern, loadSettings } from "./lib/settings.js";
import { countsText, h, pct, probabilityRows, sparkline, splitBar } from "./lib/ui.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let settings;
let tabId = null;

async function targetTab() {
  // ?tab=<id>: the popped-out panel (and the tests) name the tab they report on.
  if (params.has("tab")) return Number(params.get("tab"));
  const [tab] = await chrome.tabs.query({ active: true, currentWindow: true });
  return tab?.id ?? null;
}

function message(text, kind = "") {
  const box = $("message");
  box.hidden = !text;
  box.textContent = text ?? "";
  box.className = `notice ${kind}`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
}

/** Host permission for the endpoint; asks for it (this runs in the click's user gesture). */
async function ensurePermission() {
  const pattern = endpointPattern(settings);
  if (!pattern) return false;
  if (await chrome.permissions.contains({ origins: [pattern] })) return true;
  try {
    return await chrome.permissions.request({ origins: [pattern] });
  } catch {
    return false;
  }
}

function permissionDenied() {
  message(`CivicSense needs your permission to contact ${settings.endpoint}. Click again and ` +
    "allow it, or change the endpoint in Options.", "error");
}

async function analyzeSelection() {
  $("analyze-selection").disabled = true;
  try {
    if (!(await ensurePermission())) return permissionDenied();
    message("Analyzing the selection…");
    const answer = await chrome.runtime.sendMessage({ type: "analyze-selection", tabId });
    if (!answer?.ok) {
      $("selection").hidden = true;
      return message(answer?.error?.message ?? "No answer from CivicSense", "error");
    }
    message("");
    renderSelection(answer);
  } finally {
    $("analyze-selection").disabled = false;
  }
}

function renderSelection({ result, preview, maxChars, modelVersion }) {
  $("selection").hidden = false;
  const label = $("selection-label");
  label.textContent = result.label;
  label.className = `big-label ${result.label}`;
  $("selection-probs").replaceChildren(...probabilityRows(result.probabilities));
  const meta = [];
  if (result.topics?.length) meta.push(`Topics: ${result.topics.map(topicName).join(", ")}`);
  if (result.truncated) meta.push(`Long selection: only its first ${maxChars} characters were analyzed.`);
  if (modelVersion) meta.push(`Model version ${String(modelVersion).split("+")[0]}`);
  $("selection-meta").replaceChildren(
    h("div", { class: "preview", text: `${preview}${result.chars > preview.length ? "…" : ""}` }),
    ...meta.map((m) => h("div", { text: m })));
}

async function analyzePage() {
  $("analyze-page").disabled = true;
  try {
    if (!(await ensurePermission())) return permissionDenied();
    message("");
    const answer = await chrome.runtime.sendMessage({ type: "analyze-page", tabId });
    if (!answer?.ok) message(answer?.error?.message ?? "No answer from CivicSense", "error");
  } finally {
    $("analyze-page").disabled = false;
  }
}

const topicName = (id) => settings.topics.find((t) => t.id === id)?.name ?? id;

function renderPage(page) {
  const stateBox = $("page-state");
  const progress = $("page-progress");
  const overall = $("page-overall");
  $("page").dataset.state = page?.state ?? "idle";
  progress.hidden = page?.state !== "running";
  overall.hidden = true;
  $("page-topics").replaceChildren();
  stateBox.className = "muted";
  if (!page) {
    stateBox.textContent = "Click “Analyze this page” to put a sentiment badge on each post.";
    return;
  }
  if (page.state === "running") {
    progress.max = page.total || 1;
    progress.value = page.done || 0;
    stateBox.textContent = page.total ? `Analyzing ${page.done} / ${page.total} posts…`
      : "Finding posts…";
    return;
  }
  if (page.state === "empty") {
    stateBox.textContent = "No posts found on this page. Select a passage and use “Analyze " +
      "selection” instead.";
    return;
  }
  if (page.state === "error") {
    stateBox.className = "notice error";
    stateBox.setAttribute("role", "alert");
    stateBox.textContent = page.error?.message ?? "Something went wrong.";
    if (!page.counts || !total(page.counts[ALL])) return;
  } else {
    const notes = [];
    if (page.cancelled) notes.push("Cancelled before the end.");
    if (page.truncated) notes.push(`${page.truncated} long posts were cut to fit the server's limit.`);
    if (page.capped) notes.push("Very long page: only the first 2,000 posts were analyzed.");
    if (page.modelVersion) notes.push(`Model version ${String(page.modelVersion).split("+")[0]}.`);
    stateBox.textContent = notes.join(" ");
  }
  const all = page.counts[ALL];
  overall.hidden = false;
  $("page-total").textContent = total(all);
  $("page-counts").replaceChildren(countsText(all));
  $("page-split").replaceChildren(splitBar(all, { label: "This page" }));
  $("page-topics").replaceChildren(...settings.topics.map((t) => {
    const c = page.counts[t.id];
    const n = total(c);
    return h("div", { class: `topic${n ? "" : " none"}`, dataset: { topic: t.id, total: n } },
      h("span", { class: "name", text: t.name, title: t.keywords.join(", ") }),
      splitBar(c, { label: t.name }),
      n ? countsText(c) : h("span", { class: "n", text: "no posts" }));
  }));
}

function renderHistory(history) {
  const rows = [{ id: ALL, name: "All posts" }, ...settings.topics].map((t) => {
    const trend = topicTrend(history, t.id);
    const n = total(trend.sum);
    const arrows = { up: "↗", down: "↘", flat: "→", none: "" };
    const words = { up: "getting more positive", down: "getting more negative", flat: "steady",
      none: "not enough days for a trend" };
    const netText = `${trend.net > 0 ? "+" : trend.net < 0 ? "−" : "±"}${pct(Math.abs(trend.net ?? 0))}`;
    const dir = n ? `${arrows[trend.direction]} ${netText} · ${n} posts`.trim() : "no posts yet";
    const explain = n ? `${t.name}: ${n} posts, net ${netText}, ${words[trend.direction]}` : `${t.name}: no posts yet`;
    const spark = sparkline(trend.series);
    spark.setAttribute("aria-label", explain);
    return h("div", { class: "trend", dataset: { topic: t.id, total: n, direction: trend.direction } },
      h("span", { class: "name", text: t.name }), spark,
      h("span", { class: `dir ${trend.direction}`, text: dir, title: explain }));
  });
  $("history-topics").replaceChildren(...rows);
  $("history-title").textContent = `Your history · last ${TREND_DAYS} days`;
}

async function refresh() {
  const key = `page:${tabId}`;
  const [{ [key]: page }, { history }] = await Promise.all([
    chrome.storage.session.get(key), chrome.storage.local.get("history")]);
  renderPage(page);
  renderHistory(history);
}

async function main() {
  if (params.has("tab")) document.body.classList.add("tab");
  settings = await loadSettings();
  tabId = await targetTab();
  $("endpoint").textContent = settings.endpoint;
  $("analyze-selection").addEventListener("click", analyzeSelection);
  $("analyze-page").addEventListener("click", analyzePage);
  $("open-options").addEventListener("click", () => chrome.runtime.openOptionsPage());
  $("popout").hidden = params.has("tab") || tabId === null;
  $("popout").addEventListener("click", () => {
    chrome.tabs.create({ url: chrome.runtime.getURL(`popup.html?tab=${tabId}`) });
    window.close();
  });
  if (tabId === null) {
    for (const b of document.querySelectorAll(".actions button")) b.disabled = true;
    message("No page to analyze in this window.", "error");
  }
  chrome.storage.onChanged.addListener(async (changes, area) => {
    if (area === "local" && changes.settings) settings = await loadSettings();
    if ((area === "session" && changes[`page:${tabId}`]) || (area === "local")) await refresh();
  });
  await refresh();
  document.body.dataset.ready = "true";
}

main();
