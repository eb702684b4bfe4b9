// Live-connection glue for the htmx websocket extension: a status badge, catch-up after a
// reconnect (the server replays events newer than the newest one on the page) and de-duplication.
(function () {
  function newestSeq() {
    var max = 0;
    document.querySelectorAll("#event-log [data-seq]").forEach(function (el) {
      max = Math.max(max, parseInt(el.dataset.seq, 10) || 0);
    });
    return max;
  }
  function setStatus(text, cls) {
    var el = document.getElementById("ws-status");
    if (el) { el.textContent = text; el.className = "ws-status " + cls; }
  }
  document.addEventListener("htmx:wsOpen", function (evt) {
    setStatus("live", "live");
    if (document.getElementById("event-log")) {
      evt.detail.socketWrapper.send(JSON.stringify({ resume_after: newestSeq() }));
    }
  });
  // The extension only retries after abnormal closes; a server restart closes cleanly (1000/1001),
  // so retry those too, with a growing pause, while the page is open.
  var retries = 0;
  var leaving = false;
  window.addEventListener("beforeunload", function () { leaving = true; });
  document.addEventListener("htmx:wsOpen", function () { retries = 0; });
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
  document.addEventListener("htmx:wsAfterMessage", function () {
    // A live event and a replayed one can cross during a reconnect: keep the first copy.
    var seen = {};
    document.querySelectorAll("#event-log > [id]").forEach(function (el) {
      if (seen[el.id]) { el.remove(); } else { seen[el.id] = true; }
    });
  });
})();
