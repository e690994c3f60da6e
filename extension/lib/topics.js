// Topic matching: a text belongs to every topic one of whose keywords it contains.

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Same apostrophes and dashes everywhere, so "women’s" matches "women's". */
export function normalizeText(text) {
  return String(text).toLowerCase().replace(/[\u2018\u2019\u02bc]/g, "'")
    .replace(/[\u2010-\u2015]/g, "-");
}

/** One regular expression per keyword: whole words, "*" at the end for any ending. */
export function keywordPattern(keyword) {
  let k = normalizeText(keyword).trim();
  const prefix = k.endsWith("*");
  if (prefix) k = k.slice(0, -1);
  const body = k.split(/\s+/).map(escapeRegExp).join("\\s+");
  const tail = prefix ? "" : "(?![\\p{L}\\p{N}])";
  return new RegExp(`(?<![\\p{L}\\p{N}])${body}${tail}`, "u");
}

export function compileTopics(topics) {
  return topics.map((t) => ({ id: t.id, name: t.name, patterns: t.keywords.map(keywordPattern) }));
}

/** The ids of the topics the text mentions, in the configured order. */
export function matchTopics(text, compiled) {
  const norm = normalizeText(text);
  return compiled.filter((t) => t.patterns.some((p) => p.test(norm))).map((t) => t.id);
}
