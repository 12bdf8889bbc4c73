// The web terminal: xterm.js in the page, a websocket to a PTY on the device (host or service).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("terminal");
  if (!box || typeof Terminal === "undefined") return;
  const stateEl = document.getElementById("term-state");
  const term = new Terminal({ cursorBlink: true, convertEol: false, fontSize: 14 });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  const params = new URLSearchParams({ csrf: box.dataset.csrf, service: box.dataset.service,
                                       rows: term.rows, cols: term.cols });
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}${box.dataset.ws}?${params}`);
  ws.binaryType = "arraybuffer";
  const encoder = new TextEncoder();
  ws.onopen = () => { stateEl.textContent = "connected"; term.focus(); };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      const doc = JSON.parse(ev.data);
      if (doc.error) { stateEl.textContent = doc.error; term.write(`\r\n${doc.error}\r\n`); }
      if (doc.exit !== undefined) { stateEl.textContent = `the shell exited (${doc.exit})`; }
    } else {
      term.write(new Uint8Array(ev.data));
    }
  };
  ws.onclose = (ev) => { if (!stateEl.textContent.startsWith("the shell")) stateEl.textContent = `closed${ev.reason ? ": " + ev.reason : ""}`; };
  term.onData((d) => { if (ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(d)); });
  term.onResize(({ rows, cols }) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ resize: [rows, cols] })); });
  window.addEventListener("resize", () => fit.fit());
});
