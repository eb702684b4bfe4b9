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
      // A card swapped in a moment ago is wired by htmx only when it settles; a key pressed
      // before that would submit the form as a whole page. Wiring it now is idempotent.
      if (window.htmx && button.form) { window.htmx.process(button.form); }
      button.click();
    }
  });
})();
