// The error collector: every uncaught error, unhandled rejection and console.error on the
// page lands in window.__chronusErrors (an array of strings), which the browser tests read
// and expect empty. A classic script loaded first, so it sees the modules' errors too.
"use strict";
window.__chronusErrors = [];
window.addEventListener("error", (event) => {
  window.__chronusErrors.push(`error: ${event.message} (${event.filename}:${event.lineno})`);
});
window.addEventListener("unhandledrejection", (event) => {
  window.__chronusErrors.push(`unhandled rejection: ${event.reason}`);
});
(() => {
  const original = console.error.bind(console);
  console.error = (...args) => {
    window.__chronusErrors.push(`console.error: ${args.map(String).join(" ")}`);
    original(...args);
  };
})();
