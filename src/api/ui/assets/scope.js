// What the signed-in session may do. The server stays the authority (it answers 403 to a
// scope too small); this only shows an action the session's scope does not allow as disabled,
// with the reason, instead of offering a button that can only fail.

import { h } from "./dom.js";

// The scope each state-changing route the UI calls needs, as given by ROUTES in
// src/api/auth.rs (read < run < admin). One route a line: `ui_scopes_match_the_api_routes` in
// tests/it/ui.rs reads these lines and compares them with that table.
export const NEEDS = {
  "POST /api/v1/jobs/{name}/runs": "run",
  "POST /api/v1/jobs/{name}/upload": "run",
  "POST /api/v1/jobs/{name}/pause": "run",
  "POST /api/v1/jobs/{name}/resume": "run",
  "POST /api/v1/runs/{id}/cancel": "run",
  "POST /api/v1/runs/{id}/rerun": "run",
  "DELETE /api/v1/runs/{id}": "admin",
};

const RANK = { read: 0, run: 1, admin: 2 };

// Why the session may not call `route`, or "" when it may. An unknown scope or route is left to
// the server to judge.
export function denied(session, route) {
  const need = NEEDS[route];
  const have = session && session.scope;
  if (!(need in RANK) || !(have in RANK) || RANK[have] >= RANK[need]) return "";
  return `needs a token with the ${need} scope; this one is ${have}`;
}

let notes = 0;

// Disables `buttons` when the session may not call `route`: each gets the reason as its title
// and is described by a visible note ("Delete: needs ..."), which is returned for the caller to
// place after them (null when the session may call the route).
export function lock(session, route, ...buttons) {
  const why = denied(session, route);
  if (!why) return null;
  const id = `why-${++notes}`;
  for (const b of buttons) {
    b.disabled = true;
    b.title = why;
    b.setAttribute("aria-describedby", [b.getAttribute("aria-describedby"), id].filter(Boolean).join(" "));
  }
  return h("span", { class: "why muted", id }, `${buttons.map((b) => b.textContent).join(", ")}: ${why}`);
}

// The header's "signed in as NAME · SCOPE" (only when auth is on and a token is signed in).
export function showWho(session) {
  const who = document.getElementById("who");
  const on = session.auth === "token" && session.signed_in && !!session.name;
  who.hidden = !on;
  who.replaceChildren(...(on ? ["signed in as ", h("code", {}, session.name), ` · ${session.scope}`] : []));
}
