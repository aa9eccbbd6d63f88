// One call: its record's figures, the end reason, the transcript with tool lines, and the recording.
import { get } from "./api.js";
import { el, ms, when } from "./dom.js";

const SHOWN = ["started_at", "answered_at", "ended_at", "duration_s", "from_number", "to_number", "end_reason",
  "farewell", "transfer_to", "turns", "barge_ins", "truncations", "tool_calls", "model_sessions", "first_audio_ms",
  "turn_latency_ms_median", "turn_latency_ms_max", "total_tokens", "model", "instance", "kind"];

export function showCall(view, sid) {
  const body = el("div", { className: "call-page" }, el("p", {}, "Loading…"));
  view.append(el("h2", {}, `Call ${sid}`), body);
  load(body, sid);
}

async function load(body, sid) {
  const shown = await get(`/calls/${encodeURIComponent(sid)}`);
  if (!shown.ok) {
    body.replaceChildren(el("p", { className: "error" }, shown.body.error || String(shown.status)));
    return;
  }
  const { call, transcript } = shown.body;
  const figures = el("dl", { className: "figures" });
  for (const name of SHOWN) {
    const value = call[name];
    if (value === null || value === undefined) continue;
    const text = name.endsWith("_at") ? when(value) : name.endsWith("_ms") || name.endsWith("_median") ? ms(value) : value;
    figures.append(el("dt", {}, name.replaceAll("_", " ")), el("dd", {}, String(text)));
  }
  const lines = transcript.map((line) => el("li", { className: `line ${line.role}` },
    el("span", { className: "offset" }, `${(line.offset_ms / 1000).toFixed(1)} s `), el("b", {}, `${line.role}: `), line.text,
    line.interrupted ? el("span", { className: "cut" }, ` (interrupted, heard ${ms(line.heard_ms)})`) : null));
  const player = el("div", { className: "recording" });
  body.replaceChildren(
    el("p", { className: "end" }, call.in_progress ? "In progress" : `Ended: ${call.end_reason || "–"}`),
    figures, el("h3", {}, "Transcript"), el("ol", { className: "transcript" }, lines),
    el("h3", {}, "Recording"), player,
    el("p", {}, el("a", { href: `/console/api/calls/${sid}/transcript.txt` }, "Transcript as text")));
  const recording = `/console/api/calls/${sid}/recording.wav`;
  const probe = await fetch(recording, { method: "HEAD", credentials: "same-origin" });
  player.append(probe.ok ? el("audio", { controls: true, preload: "metadata", src: recording })
    : el("p", { className: "empty" }, "No recording of this call."));
}
