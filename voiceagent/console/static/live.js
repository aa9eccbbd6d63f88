// Live: every call in progress, from /api/calls/live, kept current by /api/events (server-sent events).
import { get, post, events, health, outcome } from "./api.js";
import { el, ms, clock } from "./dom.js";

export function showLive(view) {
  const calls = new Map();  // call_sid -> {record, lines, barges, tools, latencies, card}
  const list = el("div", { className: "calls" });
  const empty = el("p", { className: "empty" }, "No call in progress.");
  view.append(el("h2", {}, "Calls in progress"), empty, list);

  function track(record) {
    if (calls.has(record.call_sid)) return calls.get(record.call_sid);
    const call = { record, lines: [], barges: [], tools: [], latencies: [], card: card(record) };
    calls.set(record.call_sid, call);
    list.prepend(call.card.root);
    empty.hidden = true;
    return call;
  }

  async function load(sid) {
    const shown = await get(`/calls/${sid}`);
    if (!shown.ok || !calls.has(sid)) return;
    const call = calls.get(sid);
    call.record = shown.body.call;
    for (const line of shown.body.transcript) addLine(call, line);
  }

  function addLine(call, line) {
    if (call.lines.some((seen) => seen.seq === line.seq)) return;
    call.lines.push(line);
    call.card.transcript.append(lineItem(line));
  }

  const source = events();
  source.addEventListener("call_started", (e) => track(recordOf(JSON.parse(e.data))));
  source.addEventListener("utterance", (e) => {
    const data = JSON.parse(e.data);
    const call = calls.get(data.call_sid) || track(recordOf(data));
    addLine(call, data);
  });
  source.addEventListener("barge_in", (e) => {
    const data = JSON.parse(e.data);
    const call = calls.get(data.call_sid);
    if (call) call.card.events.append(el("li", { className: "barge-in" },
      `barge-in: the caller heard ${ms(data.heard_ms)} of ${ms(data.produced_ms)}`));
  });
  source.addEventListener("tool", (e) => {
    const data = JSON.parse(e.data);
    const call = calls.get(data.call_sid);
    if (call) call.card.events.append(el("li", { className: data.ok ? "tool" : "tool failed" },
      `tool ${data.name}: ${data.ok ? "ok" : "failed"}${data.duration_ms != null ? `, ${ms(data.duration_ms)}` : ""}`));
  });
  source.addEventListener("call_ended", (e) => {
    const data = JSON.parse(e.data);
    const call = calls.get(data.call_sid);
    if (!call) return;
    call.card.root.classList.add("ended");
    call.card.status.textContent = `ended: ${data.reason}`;
    call.card.root.append(el("a", { href: `#call/${data.call_sid}`, className: "to-history" }, "In history →"));
    calls.delete(data.call_sid);
  });
  source.addEventListener("open", async () => {
    const live = await get("/calls/live");
    if (!live.ok) return;
    for (const record of live.body.calls) {
      track(record);
      load(record.call_sid);
    }
  });

  const ticking = setInterval(async () => {
    const now = Date.now();
    for (const call of calls.values()) {
      const since = Date.parse(call.record.answered_at || call.record.started_at);
      call.card.duration.textContent = clock((now - since) / 1000);
    }
    if (!calls.size) return;
    const figures = await health();
    if (!figures.ok) return;
    for (const [sid, latencies] of Object.entries(figures.body.live_turn_latency_ms)) {
      const call = calls.get(sid);
      if (call) call.card.latency.textContent = latencies.length ? latencies.map(ms).join(", ") : "no turn yet";
    }
  }, 1000);

  return () => { source.close(); clearInterval(ticking); };
}

function recordOf(data) {
  return { call_sid: data.call_sid, from_number: data.from, kind: data.kind,
    started_at: new Date(data.ts * 1000).toISOString() };
}

function lineItem(line) {
  const cut = line.interrupted ? el("span", { className: "cut" }, ` (interrupted, heard ${ms(line.heard_ms)})`) : null;
  return el("li", { className: `line ${line.role}` }, el("b", {}, `${line.role}: `), line.text, cut);
}

function card(record) {
  const sid = record.call_sid;
  const parts = {
    duration: el("span", { className: "duration" }, "0:00"),
    status: el("span", { className: "status" }, "in progress"),
    transcript: el("ol", { className: "transcript" }),
    events: el("ul", { className: "events" }),
    latency: el("span", { className: "latency" }, "no turn yet"),
    result: el("output", { className: "result" }),
  };
  const text = el("input", { type: "text", placeholder: "words for the agent to say, or a note", name: "text" });
  const to = el("input", { type: "text", placeholder: "+15551230001 or sip:…", name: "to" });
  const act = (kind, body) => async () => {
    parts.result.textContent = `${kind}…`;
    const result = await post(`/calls/${sid}/${kind}`, body());
    parts.result.textContent = `${kind}: ${outcome(result)}`;
    parts.result.className = result.ok ? "result ok" : "result refused";
  };
  const button = (label, kind, body = () => ({})) => el("button", { type: "button", onclick: act(kind, body) }, label);
  parts.root = el("article", { className: "call", dataset: { sid } },
    el("h3", {}, record.from_number || "(no number)", " ", parts.duration, " ", parts.status,
      record.kind === "eval" ? [" ", el("span", { className: "kind-eval", title: "placed by voiceagent eval" }, "eval")] : null),
    el("p", { className: "sid" }, sid),
    parts.transcript,
    parts.events,
    el("p", {}, "Turn latency (caller stopped → agent heard): ", parts.latency),
    el("div", { className: "actions" },
      text, button("Say", "say", () => ({ text: text.value })), button("Note", "note", () => ({ text: text.value })),
      to, button("Transfer", "transfer", () => ({ to: to.value })), button("Hang up", "hangup")),
    parts.result);
  return parts;
}
