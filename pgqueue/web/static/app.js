// pgqueue dashboard: live regions and the jobs page's "select all". No dependencies.
(function () {
  "use strict";
  var body = document.body;
  var status = document.getElementById("live-status");

  function setMode(mode) {
    body.dataset.live = mode;
    if (status) { status.className = "live " + mode; status.title = "live updates: " + mode; }
  }

  // Redraw every [data-live] region from a fresh copy of this page, except one the
  // operator is using (focus inside, or a checked box).
  var busy = false;
  function refresh() {
    if (busy) { return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Pgqueue-Live": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (el) {
          if (el.contains(document.activeElement) && document.activeElement !== body) { return; }
          if (el.querySelector("input:checked")) { return; }
          var next = fresh.getElementById(el.id);
          if (next) { el.replaceWith(document.adoptNode(next)); }
        });
        body.dataset.updated = String(Date.now());
      })
      .catch(function () { /* the next event or poll tries again */ })
      .then(function () { busy = false; });
  }

  var polling = null;
  function poll() {
    if (polling === null) { polling = window.setInterval(refresh, 5000); }
    setMode("poll");
  }

  if (body.dataset.livePage === "yes" && document.querySelector("[data-live]")) {
    if (window.EventSource) {
      var source = new EventSource(body.dataset.events);
      source.addEventListener("mode", function (e) { setMode(e.data === "listen" ? "sse" : "sse-poll"); });
      source.addEventListener("change", refresh);
      source.onerror = function () {
        if (source.readyState === EventSource.CLOSED) { poll(); }
      };
    } else {
      poll();
    }
  }

  var all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name=ids]").forEach(function (box) { box.checked = all.checked; });
    });
  }
})();
