// Live device logs over server-sent events: filter by service, pause, download.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("log-lines");
  if (!box) return;
  const select = document.getElementById("log-service");
  const pause = document.getElementById("log-pause");
  const stateEl = document.getElementById("log-state");
  const download = document.getElementById("log-download");
  const MAX = 2000;
  let source = null, paused = false, held = [];

  function line(l) {
    const div = document.createElement("div");
    const ts = new Date(l.timestamp).toISOString().replace("T", " ").slice(0, 19);
    const who = l.serviceName || (l.isSystem ? "system" : "?");
    div.className = l.isSystem ? "sys" : (l.isStdErr ? "err" : "svc");
    div.textContent = `${ts} [${who}] ${l.message}`;
    return div;
  }
  function show(lines) {
    const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    lines.forEach((l) => box.appendChild(line(l)));
    while (box.childElementCount > MAX) box.removeChild(box.firstChild);
    if (atEnd) box.scrollTop = box.scrollHeight;
  }
  function connect() {
    if (source) source.close();
    box.textContent = "";
    const svc = select.value;
    const url = box.dataset.source + (svc ? `?service=${encodeURIComponent(svc)}` : "");
    download.href = download.href.split("?")[0] + (svc ? `?service=${encodeURIComponent(svc)}` : "");
    source = new EventSource(url);
    source.onopen = () => { stateEl.textContent = paused ? "paused" : "live"; };
    source.onerror = () => { stateEl.textContent = "reconnecting…"; };
    source.addEventListener("ended", (ev) => { source.close(); stateEl.textContent = ev.data; });
    source.onmessage = (ev) => {
      const l = JSON.parse(ev.data);
      if (paused) { held.push(l); stateEl.textContent = `paused (${held.length} new)`; } else show([l]);
    };
  }
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused) { show(held); held = []; stateEl.textContent = "live"; } else stateEl.textContent = "paused";
  });
  select.addEventListener("change", connect);
  connect();
});
