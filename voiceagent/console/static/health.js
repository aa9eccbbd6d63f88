// The line's health: the figures /metrics serves, and the last hour's calls as a sparkline.
import { health } from "./api.js";
import { el, ms } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

export function showHealth(view) {
  const body = el("div", { className: "health" });
  view.append(el("h2", {}, "The line's health"), body);
  const refresh = async () => {
    const result = await health();
    if (result.ok) body.replaceChildren(...render(result.body));
  };
  refresh();
  const timer = setInterval(refresh, 5000);
  return () => clearInterval(timer);
}

function render(h) {
  const hour = h.last_hour;
  const tile = (label, value, note) => el("div", { className: "tile" },
    el("span", { className: "label" }, label), el("span", { className: "value" }, value), note ? el("small", {}, note) : null);
  const quantiles = (q) => `${ms(q.p50)} / ${ms(q.p95)}`;
  return [
    el("div", { className: "tiles" },
      tile("Calls in progress", `${h.calls_in_progress} of ${h.max_calls}`),
      tile("Calls, last hour", String(hour.calls), hour.capped ? "the latest 500" : null),
      tile("Failed, last hour", String(hour.failures), "model unreachable, or never answered"),
      tile("Time to greeting p50 / p95", quantiles(h.time_to_greeting_ms), since(h.time_to_greeting_ms.count, "call")),
      tile("Turn latency p50 / p95", quantiles(h.turn_latency_ms), since(h.turn_latency_ms.count, "turn")),
      tile("Model reconnects", String(h.model_reconnects))),
    el("figure", {}, sparkline(hour.calls_per_step, hour.failures_per_step),
      el("figcaption", {}, `Calls (and failures, red) per ${hour.step_seconds / 60} minutes, the last hour`)),
  ];
}

/** The quantiles come from /metrics' histogram buckets (as Prometheus estimates them), since start-up. */
function since(count, what) {
  return `${count} ${what}${count === 1 ? "" : "s"} since start-up; estimated from /metrics' buckets`;
}

/** An inline SVG: calls as a line, failures as red bars, one point per step. */
function sparkline(calls, failures, width = 360, height = 60) {
  const top = Math.max(1, ...calls);
  const x = (i) => (i / Math.max(1, calls.length - 1)) * (width - 4) + 2;
  const y = (v) => height - 2 - (v / top) * (height - 4);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  failures.forEach((v, i) => {
    if (!v) return;
    const bar = document.createElementNS(SVG, "rect");
    Object.entries({ x: x(i) - 3, y: y(v), width: 6, height: height - 2 - y(v), class: "failures" })
      .forEach(([k, val]) => bar.setAttribute(k, val));
    svg.append(bar);
  });
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", calls.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" "));
  line.setAttribute("class", "calls");
  svg.append(line);
  return svg;
}
