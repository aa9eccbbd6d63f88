// History: calls newest first, with the API's filters (date, number, end reason, kind) and its cursor paging.
// Real calls only unless the operator asks for the eval calls (voiceagent eval) too.
import { get } from "./api.js";
import { el, when } from "./dom.js";

export function showHistory(view) {
  const from = el("input", { type: "date", name: "from" });
  const to = el("input", { type: "date", name: "to" });
  const number = el("input", { type: "text", name: "number", placeholder: "+15551234567" });
  const reason = el("input", { type: "text", name: "reason", placeholder: "hung up" });
  const kind = el("select", { name: "kind" },
    el("option", { value: "live" }, "Real calls"), el("option", { value: "eval" }, "Eval calls"),
    el("option", { value: "all" }, "Both"));
  const rows = el("tbody");
  const problem = el("p", { className: "error" });
  const older = el("button", { type: "button", hidden: true }, "Older →");
  const newer = el("button", { type: "button", hidden: true }, "← Newer");
  const cursors = [];  // the cursors of the pages before this one

  async function page(cursor) {
    const query = new URLSearchParams({ limit: "25" });
    if (from.value) query.set("from", `${from.value}T00:00:00`);
    if (to.value) query.set("to", `${to.value}T23:59:59`);
    if (number.value.trim()) query.set("number", number.value.trim());
    if (reason.value.trim()) query.set("reason", reason.value.trim());
    if (kind.value !== "live") query.set("kind", kind.value);
    if (cursor) query.set("cursor", cursor);
    const result = await get(`/calls?${query}`);
    problem.textContent = result.ok ? "" : result.body.error;
    if (!result.ok) return;
    rows.replaceChildren(...result.body.calls.map(row));
    if (!result.body.calls.length) rows.append(el("tr", {}, el("td", { colSpan: 6 }, "No calls.")));
    older.hidden = !result.body.next_cursor;
    older.onclick = () => { cursors.push(cursor); page(result.body.next_cursor); };
    newer.hidden = !cursors.length;
    newer.onclick = () => page(cursors.pop());
  }

  const filters = el("form", { className: "filters", onsubmit: (e) => { e.preventDefault(); cursors.length = 0; page(); } },
    el("label", {}, "From ", from), el("label", {}, "To ", to), el("label", {}, "Number ", number),
    el("label", {}, "End reason ", reason), el("label", {}, "Calls ", kind), el("button", { type: "submit" }, "Filter"));
  const head = el("tr", {}, ["Started", "From", "To", "Duration", "End reason", ""].map((h) => el("th", {}, h)));
  view.append(el("h2", {}, "History"), filters, problem,
    el("table", { className: "history" }, el("thead", {}, head), rows), el("p", {}, newer, " ", older));
  page();
}

function row(call) {
  const duration = call.duration_s != null ? `${call.duration_s.toFixed(1)} s` : call.in_progress ? "in progress" : "–";
  const started = call.kind === "eval"
    ? [when(call.started_at), " ", el("span", { className: "kind-eval", title: "placed by voiceagent eval" }, "eval")]
    : [when(call.started_at)];
  return el("tr", { dataset: { sid: call.call_sid, kind: call.kind || "live" } },
    el("td", {}, ...started), el("td", {}, call.from_number || "–"), el("td", {}, call.to_number || "–"),
    el("td", {}, duration), el("td", {}, call.end_reason || "–"),
    el("td", {}, el("a", { href: `#call/${call.call_sid}` }, "Open")));
}
