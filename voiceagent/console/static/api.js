// The operator API, reached through /console/api with the session cookie (no token in the page).

const BASE = "/console/api";

async function answer(response) {
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (response.status === 401) location.assign("/console");  // the session ended: sign in again
  return { status: response.status, ok: response.ok, body };
}

export async function get(path) {
  return answer(await fetch(BASE + path, { credentials: "same-origin" }));
}

export async function post(path, body = {}) {
  const init = {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  return answer(await fetch(BASE + path, init));
}

export async function health() {
  return answer(await fetch("/console/health", { credentials: "same-origin" }));
}

export function events() {
  return new EventSource(BASE + "/events");
}

/** "202 accepted" or "409 the call cannot take that now …": what the API said, as one line. */
export function outcome(result) {
  const said = typeof result.body === "object" ? result.body.error || result.body.status : result.body;
  return `${result.status} ${said || ""}`.trim();
}
