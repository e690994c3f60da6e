// History across pages: counts per topic and day, never texts or addresses.
import { CLASSES } from "./settings.js";

export const KEEP_DAYS = 90;
export const TREND_DAYS = 14;
export const ALL = "_all";

export const zero = () => ({ negative: 0, neutral: 0, positive: 0 });
export const total = (c) => (c ? c.negative + c.neutral + c.positive : 0);

/** Local calendar day, YYYY-MM-DD. */
export function dayKey(date = new Date()) {
  const p = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}`;
}

export function shiftDay(day, delta) {
  const [y, m, d] = day.split("-").map(Number);
  return dayKey(new Date(y, m - 1, d + delta));
}

/** Page counts from per-post results: {_all: {...}, <topic id>: {...}}. */
export function tally(results) {
  const counts = { [ALL]: zero() };
  for (const r of results) {
    if (!CLASSES.includes(r.label)) continue;
    counts[ALL][r.label] += 1;
    for (const id of r.topics ?? []) {
      counts[id] ??= zero();
      counts[id][r.label] += 1;
    }
  }
  return counts;
}

/** history.days[day][topic] += sign × counts (sign −1 takes back an earlier analysis). */
export function addCounts(history, day, counts, sign = 1) {
  const days = { ...(history?.days ?? {}) };
  const today = { ...(days[day] ?? {}) };
  for (const [topic, c] of Object.entries(counts)) {
    const cur = { ...(today[topic] ?? zero()) };
    for (const cls of CLASSES) cur[cls] = Math.max(0, (cur[cls] ?? 0) + sign * (c[cls] ?? 0));
    if (total(cur) > 0) today[topic] = cur;
    else delete today[topic];
  }
  if (Object.keys(today).length) days[day] = today;
  else delete days[day];
  return { version: 1, days };
}

export function pruneHistory(history, today = dayKey(), keepDays = KEEP_DAYS) {
  const oldest = shiftDay(today, -(keepDays - 1));
  const days = Object.fromEntries(Object.entries(history?.days ?? {})
    .filter(([day]) => day >= oldest && day <= today));
  return { version: 1, days };
}

/** Net sentiment in [-1, 1]: (positive − negative) / all. */
export const net = (c) => (total(c) ? (c.positive - c.negative) / total(c) : null);

/** Per-day series over the last `days` days, the window's sum, and a trend direction from
 * the least-squares slope of the daily net sentiment (needs two days with posts). */
export function topicTrend(history, topic, today = dayKey(), days = TREND_DAYS) {
  const series = [];
  const sum = zero();
  for (let i = days - 1; i >= 0; i -= 1) {
    const day = shiftDay(today, -i);
    const c = history?.days?.[day]?.[topic] ?? zero();
    for (const cls of CLASSES) sum[cls] += c[cls];
    series.push({ day, counts: c, net: net(c) });
  }
  const pts = series.map((s, x) => [x, s.net]).filter(([, y]) => y !== null);
  let direction = "none";
  let slope = 0;
  if (pts.length >= 2) {
    const mx = pts.reduce((a, [x]) => a + x, 0) / pts.length;
    const my = pts.reduce((a, [, y]) => a + y, 0) / pts.length;
    const sxx = pts.reduce((a, [x]) => a + (x - mx) ** 2, 0);
    slope = sxx ? pts.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0) / sxx : 0;
    direction = slope > 0.01 ? "up" : slope < -0.01 ? "down" : "flat";
  }
  return { series, sum, net: net(sum), slope, direction, daysWithPosts: pts.length };
}
