// The review queue's keys: Y good, N not good, S skip (outside a text box); in a score box, Enter saves.
(function () {
  var KEYS = { y: "label-up", n: "label-down", s: "label-skip" };
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select") { return; }
    var id = KEYS[(event.key || "").toLowerCase()];
    var button = id && document.getElementById(id);
    if (button && !button.disabled) {
      event.preventDefault();
      button.click();
    }
  });
})();
