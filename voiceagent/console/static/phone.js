// "Call the agent": the browser as a Twilio Media Stream. The microphone goes out as μ-law 8 kHz media
// frames (phone-worklet.js); the agent's media is played as it arrives; each mark is echoed when the
// page's own playback clock has played the audio before it; a clear stops playback at once.
import { el } from "./dom.js";
import { outcome } from "./api.js";

const ULAW = new Float32Array(256).map((_, byte) => {
  const u = ~byte & 0xff, exponent = (u >> 4) & 7, mantissa = u & 0x0f;
  const magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
  return ((u & 0x80) ? -magnitude : magnitude) / 32768;
});

const hex = (n) => Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, "0")).join("");
const b64 = (bytes) => btoa(String.fromCharCode(...bytes));
const unb64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

export function showPhone(view) {
  const status = el("p", { className: "phone-status" }, "Not in a call.");
  const figures = el("p", { className: "phone-figures" }, "");
  const call = el("button", { type: "button", className: "call-button" }, "Call the agent");
  const hang = el("button", { type: "button", disabled: true }, "Hang up");
  const root = el("section", { className: "phone", dataset: { state: "idle", received: "0", played: "0", clears: "0" } },
    el("p", {}, "Talk to the agent from this browser: the microphone and the speaker, as a real call (the model, " +
      "the tools, the records and the live view). Leaving this page hangs up."),
    el("p", {}, call, " ", hang), status, figures);
  view.append(el("h2", {}, "Call the agent"), root);
  let phone = null;
  const show = (state, text) => { root.dataset.state = state; status.textContent = text; };
  call.onclick = async () => {
    call.disabled = true;
    try {
      phone = await dial(show, (f) => {
        Object.assign(root.dataset, f);
        figures.textContent = `heard ${(f.played / 8000).toFixed(1)} s of the agent, ${f.clears} clear(s), sent ${(f.sent / 8000).toFixed(1)} s`;
      });
      hang.disabled = false;
    } catch (error) {
      show("failed", String(error.message || error));
      call.disabled = false;
    }
    phone?.closed.then(() => { call.disabled = false; hang.disabled = true; });
  };
  hang.onclick = () => phone?.hangUp();
  return () => phone?.hangUp();
}

async function dial(show, report) {
  show("dialling", "Asking the line for a call…");
  const placed = await fetch("/console/phone", { method: "POST", credentials: "same-origin" });
  const answer = await placed.json();
  if (!placed.ok) throw new Error(outcome({ status: placed.status, body: answer }));
  const callSid = answer.call_sid, streamSid = `MZ${hex(16)}`;
  const mic = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } });
  const context = new AudioContext();
  await context.audioWorklet.addModule("/console/static/phone-worklet.js");
  const encoder = new AudioWorkletNode(context, "mulaw-encoder");
  context.createMediaStreamSource(mic).connect(encoder);
  encoder.connect(context.destination);  // silent: pulled by the graph, so that it runs
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/console/phone/stream`);
  const f = { received: 0, played: 0, clears: 0, sent: 0 };
  let sequence = 0, playhead = 0, playing = [], marks = [];  // marks: [{name, at}] in context time
  const send = (message) => socket.readyState === WebSocket.OPEN &&
    socket.send(JSON.stringify({ ...message, sequenceNumber: String(++sequence) }));

  socket.onopen = () => {
    socket.send(JSON.stringify({ event: "connected", protocol: "Call", version: "1.0.0" }));
    send({ event: "start", streamSid, start: { streamSid, callSid, accountSid: `AC${"0".repeat(32)}`, tracks: ["inbound"],
      mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 }, customParameters: {} } });
    show("in-call", `In a call (${callSid}).`);
  };
  encoder.port.onmessage = ({ data }) => {
    if (sequence < 1) return;
    send({ event: "media", streamSid, media: { track: "inbound", chunk: String(sequence), timestamp: String(f.sent / 8), payload: b64(data) } });
    f.sent += data.length;
  };
  socket.onmessage = ({ data }) => {
    const message = JSON.parse(data);
    if (message.event === "media") play(unb64(message.media.payload));
    else if (message.event === "mark") marks.push({ name: message.mark.name, at: Math.max(playhead, context.currentTime) });
    else if (message.event === "clear") clear();
  };
  function play(bytes) {
    const buffer = context.createBuffer(1, bytes.length, 8000);
    buffer.getChannelData(0).set(Array.from(bytes, (b) => ULAW[b]));
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    const at = Math.max(playhead, context.currentTime);
    source.start(at);
    playing.push({ source, at, bytes: bytes.length });
    playhead = at + buffer.duration;
    f.received += bytes.length;
  }
  function clear() {  // stop now; every pending mark is echoed at once, as Twilio does
    for (const { source } of playing) source.stop();
    tick();
    playing = [];
    playhead = context.currentTime;
    for (const mark of marks) echo(mark.name);
    marks = [];
    f.clears += 1;
    report({ ...f });
  }
  const echo = (name) => send({ event: "mark", streamSid, mark: { name } });
  function tick() {  // the page's playback clock: what has played, and the marks it has passed
    const now = context.currentTime;
    for (const item of playing) {
      const heard = Math.min(item.bytes, Math.max(0, Math.round((now - item.at) * 8000)));
      f.played += heard - (item.counted || 0);
      item.counted = heard;
    }
    playing = playing.filter((item) => item.counted < item.bytes);
    while (marks.length && marks[0].at <= now) echo(marks.shift().name);
    report({ ...f });
  }
  const clockTimer = setInterval(tick, 20);
  const closed = new Promise((resolve) => { socket.onclose = resolve; });
  closed.then(() => {
    clearInterval(clockTimer);
    mic.getTracks().forEach((track) => track.stop());
    context.close();
    show("ended", `The call ended (${callSid}).`);
  });
  return {
    closed,
    hangUp() {
      send({ event: "stop", streamSid, stop: { accountSid: `AC${"0".repeat(32)}`, callSid } });
      socket.close(1000);
    },
  };
}
