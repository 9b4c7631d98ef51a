// Small DOM helpers shared by the views: an element builder (text is always set as text, never
// parsed as HTML), times in the browser's zone and in UTC, states, sizes, durations.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export const pad = (n) => String(n).padStart(2, "0");

// "2026-05-03 14:30:05" in the browser's zone.
export function local(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// "2026-05-03 12:30:05 UTC".
export function utc(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return `${d.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

// A <time> showing local time, with UTC in its title.
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: iso, title: utc(iso) }, local(iso));
}

// Local time and UTC side by side.
export function timeBoth(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  return h("span", {}, h("time", { datetime: iso }, local(iso)), " ", h("span", { class: "muted" }, `(${utc(iso)})`));
}

// "in 5 min", "3 h ago".
export function relative(iso) {
  const ms = new Date(iso) - Date.now();
  const a = Math.abs(ms) / 1000;
  const text = a < 60 ? `${Math.round(a)} s` : a < 3600 ? `${Math.round(a / 60)} min`
    : a < 172800 ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86400)} d`;
  return ms >= 0 ? `in ${text}` : `${text} ago`;
}

export function duration(from, to) {
  if (!from) return "";
  const s = ((to ? new Date(to) : new Date()) - new Date(from)) / 1000;
  if (s < 0) return "";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export function size(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

export const STATES = ["queued", "running", "succeeded", "failed", "cancelled", "timed_out", "skipped", "interrupted"];

export function badge(state) {
  return h("span", { class: `badge s-${state}` }, state ? state.replace("_", " ") : "never run");
}

export function toast(message, bad) {
  const t = document.getElementById("toast");
  t.textContent = message;
  t.className = bad ? "show bad" : "show";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = ""; }, 5000);
}

// An error as a paragraph of the page.
export function errorBox(e) {
  return h("p", { class: "error", role: "alert" }, e && e.message ? e.message : String(e));
}

// A table that scrolls sideways on narrow screens.
export function table(head, rows, empty) {
  if (!rows.length) return h("p", { class: "muted" }, empty || "Nothing here.");
  return h("div", { class: "scroll" },
    h("table", {}, h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows)));
}

// The usual columns of a list of runs.
export const RUN_HEAD = ["Run", "Job", "State", "Trigger", "Queued", "Duration"];

export function runRow(r) {
  return h("tr", {},
    h("td", {}, h("a", { href: `/runs/${r.id}` }, `#${r.id}`)),
    h("td", {}, h("a", { href: `/jobs/${encodeURIComponent(r.job)}` }, r.job)),
    h("td", {}, badge(r.state)),
    h("td", {}, triggerText(r.trigger)),
    h("td", {}, time(r.not_before && r.state === "queued" ? r.not_before : r.queued_at)),
    h("td", {}, duration(r.started_at, r.finished_at)));
}

export function triggerText(t) {
  if (!t || !t.kind) return "";
  switch (t.kind) {
    case "file": return `file ${String(t.file || "").split("/").pop()}`;
    case "rerun": return `rerun of #${t.of}`;
    case "retry": return t.of ? `retry of #${t.of}` : "retry";
    case "cron": return "schedule";
    case "job": return `after ${t.job} #${t.of}`;
    default: return t.kind;
  }
}

// Previous / next links for a paged list.
export function pager(page, pageSize, total, hrefFor) {
  const pages = Math.max(1, Math.ceil(total / pageSize));
  return h("nav", { class: "pager", "aria-label": "Pages" },
    page > 1 ? h("a", { href: hrefFor(page - 1), rel: "prev" }, "← Newer") : h("span", { class: "muted" }, "← Newer"),
    h("span", {}, `page ${page} of ${pages} · ${total} runs`),
    page < pages ? h("a", { href: hrefFor(page + 1), rel: "next" }, "Older →") : h("span", { class: "muted" }, "Older →"));
}
