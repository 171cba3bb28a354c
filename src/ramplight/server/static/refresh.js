// The flag page refreshes itself while it is open: it asks the server what the page was drawn
// from (the release: flag, plan and decisions; the evidence loaded) and reloads when the release
// changed, or the evidence did and the page is older than 30 s. It never reloads over an edit in
// progress (a changed or focused form field). Without JavaScript the page works as before.
(function () {
  "use strict";
  var main = document.querySelector("[data-stamp-url]");
  if (!main) return;
  var url = main.getAttribute("data-stamp-url");
  var release = main.getAttribute("data-release");
  var evidence = main.getAttribute("data-evidence");
  var every = Number(main.getAttribute("data-refresh-seconds")) || 10;
  var loaded = Date.now();
  var dirty = false;
  document.addEventListener("input", function () { dirty = true; });
  function editing() {
    var active = document.activeElement;
    return dirty || (active && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName));
  }
  function check() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (now) {
        if (!now || editing()) return;
        var moved = now.release !== release ||
          (String(now.evidence) !== evidence && Date.now() - loaded > 30000);
        if (moved) window.location.reload();
      })
      .catch(function () { /* the server is away: try again at the next tick */ });
  }
  window.setInterval(check, every * 1000);
})();
