// DOM helpers for the extension pages: elements built with textContent only, and small charts.
import { CLASSES } from "./settings.js";

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = String(v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

export const pct = (p) => `${Math.round(p * 100)}%`;
export const sum = (c) => (c ? c.negative + c.neutral + c.positive : 0);

/** A stacked bar of negative / neutral / positive counts, with the numbers beside it. */
export function splitBar(counts, { label = "" } = {}) {
  const n = sum(counts);
  const bar = h("div", { class: "split", role: "img",
    "aria-label": `${label ? `${label}: ` : ""}${CLASSES.map((c) => `${counts?.[c] ?? 0} ${c}`).join(", ")}` });
  if (!n) bar.classList.add("empty");
  for (const c of CLASSES) {
    if (!n || !counts[c]) continue;
    const seg = h("span", { class: `seg seg-${c}`, title: `${c}: ${counts[c]} (${pct(counts[c] / n)})` });
    seg.style.width = `${(100 * counts[c]) / n}%`;
    bar.append(seg);
  }
  return bar;
}

export function countsText(counts) {
  return h("span", { class: "counts" }, ...CLASSES.map((c) =>
    h("span", { class: `count count-${c}`, dataset: { cls: c }, title: c, text: counts?.[c] ?? 0 })));
}

/** Probability bars for one classified text. */
export function probabilityRows(probabilities) {
  return CLASSES.map((c) => {
    const fill = h("span", { class: `seg-${c}` });
    fill.style.width = pct(probabilities[c]);
    return h("div", { class: "prob-row", dataset: { cls: c } }, h("span", { class: "prob-name", text: c }),
      h("div", { class: "prob-bar" }, fill), h("span", { class: "prob-value", text: pct(probabilities[c]) }));
  });
}

/** A sparkline of daily net sentiment in [-1, 1]; days without posts leave gaps. */
export function sparkline(series, { width = 84, height = 22 } = {}) {
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "spark",
    role: "img" });
  const mid = height / 2;
  svg.append(s("line", { x1: 0, x2: width, y1: mid, y2: mid, class: "spark-zero" }));
  const step = series.length > 1 ? (width - 4) / (series.length - 1) : 0;
  const pts = series.map((d, i) => (d.net === null ? null
    : [2 + i * step, mid - d.net * (height / 2 - 3)]));
  // Days without posts are skipped: the line joins the days that have some.
  const drawn = pts.filter(Boolean);
  if (drawn.length > 1) {
    svg.append(s("polyline", { points: drawn.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "),
      class: "spark-line" }));
  }
  for (const [x, y] of drawn) {
    svg.append(s("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: 1.8, class: "spark-dot" }));
  }
  const title = s("title");
  title.textContent = "Daily net sentiment (positive − negative) / posts";
  svg.prepend(title);
  return svg;
}
