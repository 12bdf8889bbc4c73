// edgefleet dashboard: small behaviours (no inline scripts: the pages' CSP forbids them).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // "select all" on the devices table
  document.body.addEventListener("change", (ev) => {
    const box = ev.target;
    if (box.classList && box.classList.contains("select-all")) {
      box.closest("table").querySelectorAll('input[name="device"]').forEach((b) => { b.checked = box.checked; });
    }
  });
  // confirmation dialogs: a button with data-confirm asks first (the text says what will stop)
  document.body.addEventListener("click", (ev) => {
    const btn = ev.target.closest("[data-confirm-dialog]");
    if (!btn) return;
    const dialog = document.getElementById(btn.dataset.confirmDialog);
    if (dialog && typeof dialog.showModal === "function") { ev.preventDefault(); dialog.showModal(); }
  });
  document.querySelectorAll("dialog [data-close]").forEach((b) => b.addEventListener("click", () => b.closest("dialog").close()));
  // keep the devices table still while devices are selected (live refresh would drop the selection)
  document.body.addEventListener("htmx:beforeRequest", (ev) => {
    const elt = ev.detail.elt;
    if (elt.classList && elt.classList.contains("table-wrap")) {
      if (elt.querySelector('input[name="device"]:checked') || document.visibilityState !== "visible") ev.preventDefault();
    }
  });
  // errors from htmx requests become a readable message
  document.body.addEventListener("htmx:responseError", (ev) => {
    let text = ev.detail.xhr.responseText;
    try { text = JSON.parse(text).detail; } catch (e) { /* plain text */ }
    const box = document.getElementById("errors");
    box.textContent = `${ev.detail.xhr.status}: ${typeof text === "string" ? text : JSON.stringify(text)}`;
    setTimeout(() => { box.textContent = ""; }, 8000);
  });
});
