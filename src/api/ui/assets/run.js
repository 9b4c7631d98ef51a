// One run: state, times, trigger, params, progress and logs (live, from the API's event
// stream), summary, error, artifacts, and Cancel / Run again / Delete.

import { call, get, stream } from "./api.js";
import { h, badge, time, duration, size, toast, triggerText } from "./dom.js";
import { lock } from "./scope.js";

// The routes of a run's actions (see NEEDS in scope.js).
const CANCEL = "POST /api/v1/runs/{id}/cancel";
const RERUN = "POST /api/v1/runs/{id}/rerun";
const DELETE = "DELETE /api/v1/runs/{id}";

// Lines kept on the page; older ones are dropped from the view (all are in the history).
const MAX_LINES = 5000;

function facts(r) {
  const t = r.trigger || {};
  return h("dl", { class: "facts" },
    h("dt", {}, "Job"), h("dd", {}, h("a", { href: `/jobs/${encodeURIComponent(r.job)}` }, r.job)),
    h("dt", {}, "Trigger"), h("dd", {}, triggerText(t),
      t.of ? [" ", h("a", { href: `/runs/${t.of}` }, `#${t.of}`)] : null,
      t.file ? [" ", h("code", {}, t.file)] : null,
      t.scheduled_at ? [" for ", time(t.scheduled_at)] : null),
    h("dt", {}, "Queued"), h("dd", {}, time(r.queued_at)),
    r.not_before ? [h("dt", {}, "Not before"), h("dd", {}, time(r.not_before))] : null,
    h("dt", {}, "Started"), h("dd", {}, time(r.started_at)),
    h("dt", {}, "Finished"), h("dd", {}, time(r.finished_at)),
    h("dt", {}, "Duration"), h("dd", { id: "duration" }, duration(r.started_at, r.finished_at) || "—"),
    r.attempt > 1 ? [h("dt", {}, "Attempt"), h("dd", {}, String(r.attempt))] : null,
    r.retry_of ? [h("dt", {}, "Retry of"), h("dd", {}, h("a", { href: `/runs/${r.retry_of}` }, `#${r.retry_of}`))] : null,
    r.retried_by ? [h("dt", {}, "Retried by"), h("dd", {}, h("a", { href: `/runs/${r.retried_by}` }, `#${r.retried_by}`))] : null);
}

function paramsTable(params) {
  const keys = Object.keys(params || {});
  if (!keys.length) return h("p", { class: "muted" }, "No params.");
  return h("dl", { class: "facts", id: "params" }, keys.map((k) => [h("dt", {}, k),
    h("dd", {}, h("code", {}, typeof params[k] === "string" ? params[k] : JSON.stringify(params[k])))]));
}

function progressText(p) {
  if (!p) return "";
  return p.total ? `${p.done} of ${p.total} (${Math.floor((100 * p.done) / Math.max(1, p.total))} %)` : `${p.done} done`;
}

export async function run({ main, args, navigate, session }) {
  const id = args[0];
  const path = `/api/v1/runs/${id}`;
  let r = await get(path);
  const open = (s) => s === "queued" || s === "running";

  const stateBox = h("span", { id: "state" });
  const actions = h("div", { class: "actions", id: "run-actions" });
  const whys = h("div", { class: "whys" });
  const progress = h("progress", { id: "progress", max: "1", "aria-label": "progress" });
  const progressLabel = h("span", { id: "progress-text", class: "muted" });
  const outcome = h("div", { id: "outcome" });
  const factsBox = h("div", {});
  const logs = h("ol", { class: "logs", id: "logs", "aria-live": "polite", "aria-label": "log lines", tabindex: "0" });
  const logsNote = h("p", { class: "muted", id: "logs-note" });

  function showProgress(p) {
    if (p && p.total) { progress.max = p.total; progress.value = Math.min(p.done, p.total); }
    else if (r.state === "succeeded") { progress.max = 1; progress.value = 1; }
    else if (!open(r.state)) { progress.max = 1; progress.value = 0; }
    else progress.removeAttribute("value");
    progressLabel.textContent = progressText(p);
  }

  // The buttons, and below them the notes saying why the session may not use some.
  function showActions() {
    const buttons = [];
    const notes = [];
    const add = (route, b) => { buttons.push(b); notes.push(lock(session, route, b)); };
    const act = (route) => call(route, { id });
    if (open(r.state)) {
      add(CANCEL, h("button", { type: "button", id: "cancel", class: "danger", disabled: r.cancel_requested, onclick: async (e) => {
        e.target.disabled = true;
        try { const x = await act(CANCEL); toast(`Cancel asked (${x.state})`); await refresh(); }
        catch (x) { toast(x.message, true); e.target.disabled = false; }
      } }, r.cancel_requested ? "Cancelling…" : "Cancel"));
    } else {
      add(RERUN, h("button", { type: "button", id: "rerun", class: "primary", onclick: async () => {
        try { const x = await act(RERUN); toast(`Run #${x.id} ${x.state}`); navigate(`/runs/${x.id}`); }
        catch (x) { toast(x.message, true); }
      } }, "Run again"));
      add(DELETE, h("button", { type: "button", id: "delete", class: "danger", onclick: async () => {
        if (!confirm(`Delete run #${id} with its logs and artifacts?`)) return;
        try { await act(DELETE); toast(`Run #${id} deleted`); navigate(`/runs?job=${encodeURIComponent(r.job)}`, true); }
        catch (x) { toast(x.message, true); }
      } }, "Delete"));
    }
    actions.replaceChildren(...buttons);
    whys.replaceChildren(...notes.filter(Boolean));
  }

  function showOutcome() {
    const parts = [];
    if (r.error) {
      parts.push(h("section", { class: "card bad", id: "error" }, h("h2", {}, `Error: ${r.error.code}`),
        h("pre", { class: "error", id: "error-message" }, r.error.message),
        r.error.traceback ? h("details", {}, h("summary", {}, "Traceback"), h("pre", { class: "code" }, r.error.traceback)) : null));
    }
    if (r.summary !== null && r.summary !== undefined) {
      parts.push(h("section", { class: "card", id: "summary" }, h("h2", {}, "Summary"),
        h("pre", { class: "code" }, JSON.stringify(r.summary, null, 2))));
    }
    if (r.artifacts && r.artifacts.length) {
      parts.push(h("section", { class: "card", id: "artifacts" }, h("h2", {}, "Artifacts"),
        h("ul", { class: "plain" }, r.artifacts.map((a) => h("li", {},
          h("a", { href: `${path}/artifacts/${encodeURIComponent(a.name)}`, download: a.name.split("/").pop(), class: "strong" }, a.name),
          " ", h("span", { class: "muted" }, size(a.size)),
          a.sha256 ? h("div", { class: "muted mono" }, `sha256 ${a.sha256}`) : null)))));
    }
    outcome.replaceChildren(...parts);
  }

  function show() {
    document.title = `#${r.id} ${r.job} ${r.state} · ferry`;
    stateBox.replaceChildren(badge(r.state));
    if (r.cancel_requested && open(r.state)) stateBox.append(h("span", { class: "muted" }, " cancel requested"));
    factsBox.replaceChildren(facts(r));
    showProgress(r.progress);
    showActions();
    showOutcome();
  }

  async function refresh() {
    r = await get(path);
    show();
  }

  main.append(
    h("div", { class: "title" }, h("h1", {}, `Run #${r.id}`), stateBox, h("span", { class: "spacer" }), actions, whys),
    h("div", { class: "progress" }, progress, progressLabel),
    outcome,
    h("section", { class: "card" }, h("h2", {}, "Logs"), logs, logsNote),
    h("section", { class: "card" }, h("h2", {}, "Details"), factsBox),
    h("section", { class: "card" }, h("h2", {}, "Params"), paramsTable(r.params)));
  show();

  // The log stream: every line after the last one shown, then new ones as they are written,
  // progress, and a last run_finished event.
  let count = 0;
  let ended = false;
  const close = stream(`${path}/logs?follow=true`, {
    run_log: (l) => {
      const li = h("li", { class: `l-${l.level}`, "data-seq": String(l.seq) },
        h("time", { datetime: l.at, class: "muted" }, new Date(l.at).toLocaleTimeString()), " ",
        h("span", { class: "lvl" }, l.level), " ", h("span", { class: "msg" }, l.message));
      const stick = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 8;
      logs.append(li);
      if (++count > MAX_LINES) { logs.firstChild.remove(); logsNote.textContent = `Showing the last ${MAX_LINES} lines.`; }
      if (stick) logs.scrollTop = logs.scrollHeight;
      if (r.state === "queued") { r.state = "running"; show(); }
    },
    run_progress: (p) => { r.progress = { done: p.done, total: p.total }; showProgress(r.progress); },
    run_finished: () => {
      ended = true;
      close();
      if (!count) logsNote.textContent = "No log lines.";
      refresh().catch(() => {});
    },
  }, () => { if (!ended) refresh().catch(() => {}); });
  // The state changes that write no log line (started, ended without a line) come as events.
  const closeEvents = stream(`/api/v1/events?run=${id}&types=run_started,run_finished`, {
    run_started: () => refresh().catch(() => {}),
    run_finished: () => refresh().catch(() => {}),
  });
  return () => { close(); closeEvents(); };
}
