// CivicSense content script. Injected only when the user asks (popup button or context menu,
// via activeTab + scripting). It finds the post-like blocks of the page, asks the service
// worker to classify them in batches, and draws one badge per block inside a shadow root.
// Text from the page or the server is only ever set with textContent.
(() => {
  "use strict";

  const existing = globalThis.__civicsense;
  if (existing && existing.runtimeId === chrome.runtime?.id) return;

  const BADGE = "civicsense-badge";
  const PANEL = "civicsense-panel";
  const CARD = "civicsense-card";
  const OURS = new Set([BADGE, PANEL, CARD].map((t) => t.toUpperCase()));
  const MAX_POSTS = 2000; // lib/trust.js MAX_TEXTS_PER_PAGE: the worker refuses more
  // lib/trust.js MAX_RAW_TEXT_CHARS: the worker refuses longer texts (it cuts every text to
  // the "Longest text" setting, at most 20,000 characters, anyway).
  const MAX_RAW_TEXT_CHARS = 100000;
  const MIN_CHARS = 40;
  const MIN_WORDS = 6;
  const CLASSES = ["negative", "neutral", "positive"];

  const state = { runtimeId: chrome.runtime.id, running: false, cancel: false };
  globalThis.__civicsense = state;

  // --- helpers -------------------------------------------------------------------------
  const yieldToPage = () => new Promise((resolve) => {
    // A message-channel task: not throttled in background tabs as timers and rAF are.
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });

  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else node.setAttribute(k, String(v));
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  const pct = (p) => `${Math.round(p * 100)}%`;
  const clean = (s) => String(s ?? "").replace(/\s+/g, " ").trim();

  let sheet = null;
  function styles() {
    if (!sheet) {
      sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
    }
    return [sheet];
  }

  function shadowHost(tag) {
    const host = document.createElement(tag);
    const root = host.attachShadow({ mode: "open" });
    root.adoptedStyleSheets = styles();
    return { host, root };
  }

  const CSS = `
    :host { all: initial !important; display: inline-block !important; visibility: visible !important;
      opacity: 1 !important; position: static !important; margin: 0 0 0 6px !important;
      vertical-align: baseline !important; transform: none !important; filter: none !important; }
    :host(civicsense-panel), :host(civicsense-card) { display: block !important; position: fixed !important;
      z-index: 2147483647 !important; margin: 0 !important; }
    :host(civicsense-panel) { right: 16px !important; bottom: 16px !important; }
    :host(civicsense-card) { right: 16px !important; top: 16px !important; }
    * { box-sizing: border-box; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
    .badge { display: inline-flex; align-items: center; gap: 4px; padding: 1px 7px 1px 5px;
      border-radius: 999px; font-size: 11.5px; line-height: 16px; font-weight: 600;
      color: #1f2933; background: #e4e7eb; border: 1px solid #cbd2d9; white-space: nowrap;
      cursor: help; letter-spacing: 0; text-transform: none; }
    .badge .dot { width: 8px; height: 8px; border-radius: 50%; background: #7b8794; }
    .badge .pct { font-weight: 400; opacity: .8; }
    .badge .note { font-weight: 400; opacity: .8; }
    .badge.negative { background: #fde8e8; border-color: #f5b5b5; color: #8a1c1c; }
    .badge.negative .dot { background: #d64545; }
    .badge.neutral { background: #eef0f3; border-color: #cfd4da; color: #3e4c59; }
    .badge.neutral .dot { background: #8792a2; }
    .badge.positive { background: #e3f7ea; border-color: #a8e0bd; color: #14532d; }
    .badge.positive .dot { background: #2f9e5b; }
    .badge.pending { color: #616e7c; font-weight: 400; }
    .badge.pending .dot { background: #cbd2d9; }
    .badge.error { background: #fff4e5; border-color: #f7c98b; color: #7a4a00; }
    .box { width: 320px; max-width: calc(100vw - 32px); background: #ffffff; color: #1f2933;
      border: 1px solid #cbd2d9; border-radius: 10px; box-shadow: 0 6px 24px rgba(0,0,0,.18);
      padding: 12px 14px; font-size: 13px; line-height: 1.4; }
    .top { display: flex; align-items: center; justify-content: space-between; gap: 8px; }
    .title { font-weight: 700; font-size: 13px; color: #0b3954; }
    .status { margin: 6px 0; }
    .status.error { color: #9b1c1c; }
    progress { width: 100%; height: 8px; accent-color: #0b7285; }
    button { font: inherit; font-size: 12px; border: 1px solid #cbd2d9; background: #f5f7fa;
      color: #1f2933; border-radius: 6px; padding: 2px 8px; cursor: pointer; }
    button:hover { background: #e4e7eb; }
    .split { display: flex; height: 10px; border-radius: 5px; overflow: hidden; background: #e4e7eb;
      margin-top: 6px; }
    .split span { display: block; height: 100%; }
    .seg-negative { background: #d64545; } .seg-neutral { background: #9aa5b1; }
    .seg-positive { background: #2f9e5b; }
    .result { font-size: 16px; font-weight: 700; margin: 6px 0 4px; text-transform: capitalize; }
    .result.negative { color: #b42318; } .result.neutral { color: #3e4c59; } .result.positive { color: #1e7a45; }
    .row { display: grid; grid-template-columns: 64px 1fr 40px; align-items: center; gap: 6px;
      font-size: 12px; margin: 2px 0; }
    .bar { height: 8px; background: #e4e7eb; border-radius: 4px; overflow: hidden; }
    .bar span { display: block; height: 100%; }
    .num { text-align: right; font-variant-numeric: tabular-nums; }
    .muted { color: #616e7c; font-size: 12px; }
    .fb { display: inline-flex; flex-wrap: wrap; align-items: center; gap: 3px; margin-left: 4px;
      font-size: 11px; line-height: 16px; vertical-align: middle; }
    .fb-status { white-space: normal; max-width: 26em; }
    .fb button { font-size: 11px; line-height: 14px; padding: 0 6px; border-radius: 999px; }
    .fb button:disabled { opacity: .6; cursor: default; }
    .fb .choices[hidden] { display: none; }
    .fb .choices { display: inline-flex; gap: 3px; }
    .fb-status.ok { color: #1e7a45; } .fb-status.error { color: #9b1c1c; }
  `;

  // --- finding posts -------------------------------------------------------------------
  const BLOCK_TAGS = new Set(("P DIV SECTION ARTICLE LI UL OL BLOCKQUOTE DD DL DT TABLE THEAD " +
    "TBODY TFOOT TR TD TH HEADER FOOTER NAV ASIDE MAIN H1 H2 H3 H4 H5 H6 FIGURE FIGCAPTION FORM " +
    "PRE HR DETAILS SUMMARY FIELDSET ADDRESS SCRIPT STYLE NOSCRIPT TEMPLATE BUTTON SVG IFRAME " +
    "VIDEO AUDIO CANVAS IMG SELECT TEXTAREA INPUT OBJECT CODE").split(" "));
  const EXCLUDED = "nav, aside, form, button, select, textarea, pre, code, script, style, noscript, " +
    "template, svg, [role=navigation], [role=banner], [role=contentinfo], [role=complementary], " +
    "[role=search], [aria-hidden=true], [hidden], [contenteditable=''], [contenteditable=true], " +
    `body > header, body > footer, ${BADGE}, ${PANEL}, ${CARD}`;
  const GENERIC = "p, li, blockquote, dd, td, div, section, article, [role=article]";

  /** Text of an element without our badges: only its inline text (`withBlocks` false), or
   *  every descendant's too, block boundaries becoming spaces (`withBlocks` true). */
  function textOf(el, withBlocks) {
    let out = "";
    const walk = (node) => {
      for (const child of node.childNodes) {
        if (child.nodeType === Node.TEXT_NODE) { out += child.data; continue; }
        if (child.nodeType !== Node.ELEMENT_NODE) continue;
        const tag = child.tagName.toUpperCase();
        const block = BLOCK_TAGS.has(tag);
        if (tag === "BR" || (withBlocks && block)) out += " ";
        const skip = OURS.has(tag) || (withBlocks ? tag === "SCRIPT" || tag === "STYLE" : block);
        if (!skip) walk(child);
      }
    };
    walk(el);
    return clean(out);
  }
  const ownText = (el) => textOf(el, false);
  const fullText = (el) => textOf(el, true);

  const visible = (el) => el.getClientRects().length > 0
    && getComputedStyle(el).visibility !== "hidden";

  // Site adapters: the post container and the element holding its text.
  const ADAPTERS = [
    { name: "x", posts: 'article[data-testid="tweet"]', text: '[data-testid="tweetText"]' },
    { name: "reddit", posts: "shreddit-comment, shreddit-post",
      text: ':scope > [slot="comment"], :scope > [slot="text-body"]' },
    { name: "youtube", posts: "ytd-comment-view-model, ytd-comment-renderer",
      text: "#content-text" },
    { name: "hackernews", posts: ".athing.comtr", text: ".commtext" },
    { name: "mastodon", posts: "article .status, .status.status-public", text: ".status__content" },
    { name: "discourse", posts: "article.boxed.onscreen-post", text: ".cooked" },
  ];

  async function fromAdapters() {
    for (const adapter of ADAPTERS) {
      const posts = document.querySelectorAll(adapter.posts);
      if (!posts.length) continue;
      const blocks = [];
      const seen = new Set();
      for (const post of posts) {
        const anchor = post.querySelector(adapter.text);
        if (!anchor || seen.has(anchor) || !visible(anchor)) continue;
        seen.add(anchor);
        const text = fullText(anchor);
        if (text) blocks.push({ anchor, text });
      }
      if (blocks.length) return { adapter: adapter.name, blocks };
    }
    return null;
  }

  async function generic() {
    const blocks = [];
    const nodes = document.body ? document.body.querySelectorAll(GENERIC) : [];
    let i = 0;
    for (const el of nodes) {
      i += 1;
      if (i % 400 === 0) await yieldToPage();
      const text = ownText(el);
      if (text.length < MIN_CHARS || (text.match(/[\p{L}\p{N}]+/gu) ?? []).length < MIN_WORDS) continue;
      if (el.closest(EXCLUDED) || !visible(el)) continue;
      blocks.push({ anchor: el, text });
    }
    return { adapter: "generic", blocks };
  }

  async function collectBlocks() {
    const found = (await fromAdapters()) ?? (await generic());
    const capped = found.blocks.length > MAX_POSTS;
    return { ...found, blocks: found.blocks.slice(0, MAX_POSTS), capped };
  }

  // --- badges ----------------------------------------------------------------------------
  function removeOurs() {
    for (const node of document.querySelectorAll(`${BADGE}, ${PANEL}`)) node.remove();
  }

  function makeBadge(anchor) {
    const { host, root } = shadowHost(BADGE);
    const badge = h("span", { class: "badge pending", role: "note",
      "aria-label": "CivicSense: analyzing" });
    badge.append(h("span", { class: "dot" }), h("span", { class: "label", text: "…" }));
    root.append(badge);
    anchor.append(host);
    return { host, root, badge };
  }

  // "Wrong?" on a badge: the reader picks the right label; only that click sends anything
  // (the post's text and the label, through the service worker, to the configured server).
  function addFeedback(item) {
    item.root.querySelector(".fb")?.remove();
    const wrong = h("button", { type: "button", class: "wrong", text: "Wrong?",
      "aria-expanded": "false",
      title: "Tell your CivicSense server the right label: sends this post's text to it" });
    const choices = h("span", { class: "choices", hidden: "" }, ...CLASSES.map((c) =>
      h("button", { type: "button", class: `choice choice-${c}`, "data-label": c, text: c })));
    const status = h("span", { class: "fb-status", role: "status", "aria-live": "polite" });
    const box = h("span", { class: "fb" }, wrong, choices, status);
    const buttons = () => [wrong, ...choices.querySelectorAll("button")];
    wrong.addEventListener("click", (event) => {
      if (!event.isTrusted) return; // a script of the page cannot send feedback for the reader
      choices.hidden = !choices.hidden;
      wrong.setAttribute("aria-expanded", String(!choices.hidden));
    });
    choices.addEventListener("click", async (event) => {
      const label = event.target?.dataset?.label;
      if (!event.isTrusted || !CLASSES.includes(label)) return;
      for (const b of buttons()) b.disabled = true;
      status.className = "fb-status";
      status.removeAttribute("role");
      status.textContent = "Sending…";
      let answer;
      try {
        answer = await send({ type: "feedback", text: item.text.slice(0, MAX_RAW_TEXT_CHARS), label });
      } catch (error) {
        answer = { ok: false, error: { message: String(error?.message ?? error) } };
      }
      if (answer?.ok) {
        choices.hidden = true;
        wrong.hidden = true;
        status.className = "fb-status ok";
        status.textContent = `Thanks: sent as ${label}`;
        item.host.dataset.feedback = `sent:${label}`;
      } else {
        for (const b of buttons()) b.disabled = false;
        status.className = "fb-status error";
        status.setAttribute("role", "alert");
        status.textContent = answer?.error?.message ?? "The feedback was not sent.";
        item.host.dataset.feedback = "error";
      }
    });
    item.root.append(box);
  }

  function setBadge(item, result) {
    const { host, badge } = item;
    badge.replaceChildren();
    badge.className = `badge ${result.label}`;
    const p = result.probabilities;
    badge.append(h("span", { class: "dot" }), h("span", { class: "label", text: result.label }),
      h("span", { class: "pct", text: pct(p[result.label]) }));
    if (result.truncated) badge.append(h("span", { class: "note", text: "· truncated" }));
    const lines = [`CivicSense: ${result.label}`,
      ...CLASSES.map((c) => `${c} ${pct(p[c])}`)];
    if (result.topics?.length) lines.push(`topics: ${result.topics.join(", ")}`);
    if (result.truncated) lines.push(`long text: only its first ${state.maxChars} characters ` +
      "were analyzed");
    badge.title = lines.join("\n");
    badge.setAttribute("aria-label", lines.slice(0, 4).join(", "));
    host.dataset.label = result.label;
    host.dataset.topics = (result.topics ?? []).join(" ");
    addFeedback(item);
  }

  function setBadgeError(item, message) {
    item.root.querySelector(".fb")?.remove();
    item.badge.replaceChildren(h("span", { class: "dot" }), h("span", { class: "label", text: "!" }));
    item.badge.className = "badge error";
    item.badge.title = `CivicSense: ${message}`;
    item.host.dataset.label = "error";
  }

  // --- progress panel ------------------------------------------------------------------
  function makePanel() {
    const { host, root } = shadowHost(PANEL);
    const title = h("span", { class: "title", text: "CivicSense" });
    const close = h("button", { type: "button", text: "Cancel" });
    const status = h("div", { class: "status", role: "status", "aria-live": "polite",
      text: "Finding posts…" });
    const bar = h("progress", { max: "1", value: "0" });
    const split = h("div", { class: "split", hidden: "" });
    const box = h("div", { class: "box" }, h("div", { class: "top" }, title, close), status, bar,
      split);
    root.append(box);
    document.documentElement.append(host);
    close.addEventListener("click", () => {
      if (state.running) {
        state.cancel = true;
        close.textContent = "Close";
      } else host.remove();
    });
    return {
      host,
      progress(done, total) {
        bar.max = total || 1;
        bar.value = done;
        status.textContent = `Analyzing ${done} / ${total} posts…`;
      },
      finish(text, counts, isError = false) {
        close.textContent = "Close";
        bar.hidden = true;
        status.textContent = text;
        status.className = isError ? "status error" : "status";
        const all = counts?._all;
        const n = all ? all.negative + all.neutral + all.positive : 0;
        if (n) {
          split.hidden = false;
          split.replaceChildren(...CLASSES.map((c) => {
            const seg = h("span", { class: `seg-${c}`, title: `${c}: ${all[c]}` });
            seg.style.width = `${(100 * all[c]) / n}%`;
            return seg;
          }));
        }
      },
    };
  }

  function tally(results) {
    const counts = { _all: { negative: 0, neutral: 0, positive: 0 } };
    for (const r of results) {
      if (!r || !CLASSES.includes(r.label)) continue;
      counts._all[r.label] += 1;
      for (const id of r.topics ?? []) {
        counts[id] ??= { negative: 0, neutral: 0, positive: 0 };
        counts[id][r.label] += 1;
      }
    }
    return counts;
  }

  const send = (msg) => chrome.runtime.sendMessage(msg);

  async function analyzePage({ batchSize = 32, maxChars = 2000 }) {
    if (state.running) return;
    state.running = true;
    state.cancel = false;
    state.maxChars = maxChars;
    removeOurs();
    const panel = makePanel();
    try {
      const { adapter, blocks, capped } = await collectBlocks();
      if (!blocks.length) {
        panel.finish("No posts found on this page: select a passage and use " +
          "“Analyze selection” instead.");
        await send({ type: "page-done", done: 0, total: 0, counts: tally([]), adapter });
        return;
      }
      const items = blocks.map((b) => ({ ...b, ...makeBadge(b.anchor) }));
      const total = items.length;
      const results = [];
      let done = 0;
      let modelVersion = null;
      panel.progress(0, total);
      await send({ type: "page-progress", done: 0, total, adapter });
      for (let start = 0; start < total; start += batchSize) {
        if (state.cancel) break;
        const batch = items.slice(start, start + batchSize);
        const answer = await send({ type: "classify",
          texts: batch.map((b) => b.text.slice(0, MAX_RAW_TEXT_CHARS)) });
        if (!answer?.ok) {
          const error = answer?.error ?? { kind: "internal", message: "No answer from CivicSense" };
          for (const item of items.slice(start)) setBadgeError(item, error.message);
          panel.finish(error.message, tally(results), true);
          await send({ type: "page-error", error, done, total, counts: tally(results) });
          return;
        }
        modelVersion = answer.modelVersion ?? modelVersion;
        batch.forEach((item, j) => {
          const r = answer.results[j];
          if (r) {
            setBadge(item, r);
            results.push(r);
          } else {
            item.host.remove();
          }
        });
        done += batch.length;
        panel.progress(done, total);
        await send({ type: "page-progress", done, total, adapter });
        await yieldToPage();
      }
      if (state.cancel) {
        for (const item of items) if (item.badge.classList.contains("pending")) item.host.remove();
      }
      const counts = tally(results);
      const truncated = results.filter((r) => r.truncated).length;
      const parts = [`${state.cancel ? "Cancelled after" : "Analyzed"} ${results.length} posts: ` +
        CLASSES.map((c) => `${counts._all[c]} ${c}`).join(", ") + "."];
      if (truncated) parts.push(`${truncated} long posts were cut to ${maxChars} characters.`);
      if (capped) parts.push(`Only the first ${MAX_POSTS} posts were analyzed.`);
      panel.finish(parts.join(" "), counts);
      await send({ type: "page-done", done: results.length, total: results.length, counts,
        adapter, truncated, capped, cancelled: state.cancel, modelVersion,
        skipped: total - results.length });
    } catch (error) {
      panel.finish(`CivicSense stopped: ${error?.message ?? error}`, null, true);
      await send({ type: "page-error", error: { kind: "internal", message: String(error) } })
        .catch(() => {});
    } finally {
      state.running = false;
    }
  }

  // --- selection result card -------------------------------------------------------------
  function showSelection(msg) {
    document.querySelector(CARD)?.remove();
    const { host, root } = shadowHost(CARD);
    const close = h("button", { type: "button", text: "Close", "aria-label": "Close" });
    const box = h("div", { class: "box", role: "dialog", "aria-label": "CivicSense result" },
      h("div", { class: "top" }, h("span", { class: "title", text: "CivicSense" }), close));
    if (msg.error) {
      box.append(h("div", { class: "status error", role: "alert", text: msg.error.message }));
    } else {
      const r = msg.result;
      box.append(h("div", { class: `result ${r.label}`, text: r.label }));
      for (const c of CLASSES) {
        const fill = h("span", { class: `seg-${c}` });
        fill.style.width = pct(r.probabilities[c]);
        box.append(h("div", { class: "row" }, h("span", { text: c }),
          h("div", { class: "bar" }, fill), h("span", { class: "num", text: pct(r.probabilities[c]) })));
      }
      if (r.topics?.length) box.append(h("div", { class: "muted", text: `Topics: ${r.topics.join(", ")}` }));
      if (r.truncated) {
        box.append(h("div", { class: "muted", text: `Long selection: only its first ${msg.maxChars} ` +
          "characters were analyzed." }));
      }
    }
    root.append(box);
    document.documentElement.append(host);
    close.addEventListener("click", () => host.remove());
    const onKey = (e) => {
      if (e.key === "Escape") {
        host.remove();
        document.removeEventListener("keydown", onKey, true);
      }
    };
    document.addEventListener("keydown", onKey, true);
  }

  chrome.runtime.onMessage.addListener((msg, sender, sendResponse) => {
    if (sender.id !== chrome.runtime.id) return false;
    if (msg?.type === "cs:analyze-page") {
      analyzePage(msg);
      sendResponse({ ok: true, running: true });
    } else if (msg?.type === "cs:show-selection") {
      showSelection(msg);
      sendResponse({ ok: true });
    }
    return false;
  });
})();
