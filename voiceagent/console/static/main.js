// The console's views, one per #hash: live, history, call/<sid>, health, phone.
import { showLive } from "./live.js";
import { showHistory } from "./history.js";
import { showCall } from "./call.js";
import { showHealth } from "./health.js";
import { showPhone } from "./phone.js";

const view = document.getElementById("view");
let leave = () => {};

function route() {
  leave();
  view.replaceChildren();
  const [name, arg] = (location.hash.slice(1) || "live").split("/");
  const views = { live: showLive, history: showHistory, call: showCall, health: showHealth, phone: showPhone };
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("current", link.getAttribute("href") === `#${name}`);
  }
  leave = (views[name] || showLive)(view, arg) || (() => {});
}

addEventListener("hashchange", route);
route();
