// Live-connection glue for the htmx websocket extension: a status badge, catch-up after a
// reconnect (the server replays what is newer than the newest item on the page), de-duplication,
// and retries after clean closes (a server restart), which the extension itself does not retry.
(function () {
  var LISTS = ["event-log", "steps", "attempts", "eval-results"];

  function liveList() {
    for (var i = 0; i < LISTS.length; i++) {
      var el = document.getElementById(LISTS[i]);
      if (el) { return el; }
    }
    return null;
  }
  function newestSeq(list) {
    var max = 0;
    list.querySelectorAll("[data-seq]").forEach(function (el) {
      max = Math.max(max, parseInt(el.dataset.seq, 10) || 0);
    });
    return max;
  }
  function setStatus(text, cls) {
    var el = document.getElementById("ws-status");
    // Hidden until a socket exists: pages without live content have no connection to report.
    if (el) { el.textContent = text; el.className = "ws-status " + cls; el.hidden = false; }
  }

  var retries = 0;
  var leaving = false;
  window.addEventListener("beforeunload", function () { leaving = true; });

  document.addEventListener("htmx:wsConnecting", function () { setStatus("connecting…", ""); });
  document.addEventListener("htmx:wsOpen", function (evt) {
    retries = 0;
    setStatus("live", "live");
    var list = liveList();
    if (list) {
      evt.detail.socketWrapper.send(JSON.stringify({ resume_after: newestSeq(list) }));
    }
  });
  document.addEventListener("htmx:wsClose", function (evt) {
    setStatus("reconnecting…", "down");
    var code = evt.detail.event && evt.detail.event.code;
    if (leaving || [1006, 1011, 1012, 1013].indexOf(code) >= 0) { return; }
    var delay = Math.min(30000, 500 * Math.pow(2, retries++));
    setTimeout(function () {
      if (document.body.contains(evt.target)) { evt.detail.socketWrapper.reconnect(); }
    }, delay);
  });
  document.addEventListener("htmx:wsError", function () { setStatus("connection error", "down"); });
  var lastHealAsk = 0;
  document.addEventListener("htmx:wsAfterMessage", function (evt) {
    var list = liveList();
    if (!list) { return; }
    // A live item and a replayed one can cross during a reconnect: keep the first copy.
    var seen = {};
    list.querySelectorAll(":scope > [id]").forEach(function (el) {
      if (seen[el.id]) { el.remove(); } else { seen[el.id] = true; }
    });
    if (list.id !== "steps") { return; }
    // Run steps are numbered 1..n: keep them in order, and ask again for any that went missing.
    var items = Array.prototype.slice.call(list.querySelectorAll(":scope > [data-seq]"));
    var seqs = items.map(function (el) { return parseInt(el.dataset.seq, 10) || 0; });
    var sorted = seqs.slice().sort(function (a, b) { return a - b; });
    if (seqs.join() !== sorted.join()) {
      items.sort(function (a, b) { return a.dataset.seq - b.dataset.seq; });
      items.forEach(function (el) { list.appendChild(el); });
    }
    var contiguous = 0;
    while (contiguous < sorted.length && sorted[contiguous] === contiguous + 1) { contiguous++; }
    if (contiguous < sorted.length && Date.now() - lastHealAsk > 1000 && evt.detail.socketWrapper) {
      lastHealAsk = Date.now();
      evt.detail.socketWrapper.send(JSON.stringify({ resume_after: contiguous }));
    }
  });
})();
