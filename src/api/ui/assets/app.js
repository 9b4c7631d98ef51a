// The router of the one-page UI: the path names the view (/, /jobs, /jobs/NAME, /runs,
// /runs/ID, /login); links inside the app change the view without reloading the page, and
// each view can return a function that stops what it started (event streams, timers).

import { get, post, setUnauthorizedHandler } from "./api.js";
import { errorBox, toast } from "./dom.js";
import { showWho } from "./scope.js";
import { overview } from "./overview.js";
import { jobs } from "./jobs.js";
import { job } from "./job.js";
import { runs } from "./runs.js";
import { run } from "./run.js";
import { login } from "./login.js";

const ROUTES = [
  [/^\/$/, overview, "overview", "Overview"],
  [/^\/jobs$/, jobs, "jobs", "Jobs"],
  [/^\/jobs\/([^/]+)$/, job, "jobs", "Job"],
  [/^\/runs$/, runs, "runs", "Runs"],
  [/^\/runs\/(\d+)$/, run, "runs", "Run"],
  [/^\/login$/, login, "", "Sign in"],
];

let stop = null;
let session = { auth: "none", signed_in: true };

export function navigate(url, replace) {
  history[replace ? "replaceState" : "pushState"](null, "", url);
  render();
}

function toLogin() {
  if (location.pathname === "/login") return;
  navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, true);
}

async function render() {
  if (stop) { try { stop(); } catch { /* already stopped */ } }
  stop = null;
  const main = document.getElementById("main");
  const path = location.pathname;
  const route = ROUTES.find(([re]) => re.test(path));
  for (const a of document.querySelectorAll("#nav a")) {
    if (route && a.dataset.nav === route[2]) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.getElementById("logout").hidden = !(session.auth === "token" && session.signed_in);
  showWho(session);
  main.replaceChildren();
  if (!route) {
    main.append(errorBox(`No page at ${path}.`));
    return;
  }
  const [re, view, , title] = route;
  document.title = `${title} · ferry`;
  const args = path.match(re).slice(1).map(decodeURIComponent);
  const ctx = { main, args, query: new URLSearchParams(location.search), navigate, session, setSignedIn };
  try {
    stop = (await view(ctx)) || null;
  } catch (e) {
    if (e && e.status === 401) return;
    main.append(errorBox(e));
  }
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[href]");
  if (!a || a.target || a.hasAttribute("download") || e.defaultPrevented) return;
  if (e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/api/") || url.pathname.startsWith("/ui/")) return;
  if (url.pathname === location.pathname && url.hash) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
  document.getElementById("main").focus({ preventScroll: true });
  window.scrollTo(0, 0);
});

window.addEventListener("popstate", render);

// A page left for another closes what its view started: the browser may keep the page alive
// (back/forward cache) with its event streams open, each holding one of the few connections a
// browser opens to one server, until the page's own requests wait for a free one. Shown again
// from that cache, the page renders afresh.
window.addEventListener("pagehide", () => {
  if (stop) { try { stop(); } catch { /* already stopped */ } }
  stop = null;
});
window.addEventListener("pageshow", (e) => { if (e.persisted) render(); });

document.getElementById("logout").addEventListener("click", async () => {
  try { await post("/ui/logout"); } catch (e) { toast(e.message, true); }
  session.signed_in = false;
  navigate("/login", true);
});

setUnauthorizedHandler(() => {
  session.signed_in = false;
  toLogin();
});

async function start() {
  // Links pasted as #/runs/42 work too.
  if (location.hash.startsWith("#/")) history.replaceState(null, "", location.hash.slice(1));
  try { session = await get("/ui/session"); } catch { /* the API will say */ }
  if (session.auth === "token" && !session.signed_in && location.pathname !== "/login") {
    toLogin();
    return;
  }
  render();
}

// After a sign-in: who the session is now (its token's name and scope).
async function setSignedIn() {
  try { session = await get("/ui/session"); } catch { session.signed_in = true; }
}

start();
