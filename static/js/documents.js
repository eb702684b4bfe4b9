// The document library's upload: files chosen or dropped are sent one request each, so each shows its
// own progress and its own result; the library's rows then refresh (and poll while indexing runs).
(function () {
  var form = document.getElementById("upload-form");
  if (!form) { return; }
  var zone = document.getElementById("drop-zone");
  var input = document.getElementById("file-input");
  var list = document.getElementById("upload-list");
  var token = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  function refreshRows() {
    if (window.htmx) {
      window.htmx.ajax("GET", form.dataset.rowsUrl, { target: "#document-rows", swap: "outerHTML" });
    }
  }

  function send(file) {
    var item = document.createElement("li");
    var name = document.createElement("span");
    var bar = document.createElement("progress");
    var note = document.createElement("span");
    name.textContent = file.name;
    bar.max = 100;
    bar.value = 0;
    note.className = "muted";
    note.textContent = "uploading…";
    item.append(name, bar, note);
    item.dataset.file = file.name;
    list.appendChild(item);

    var body = new FormData();
    body.append("file", file);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.uploadUrl);
    xhr.setRequestHeader("X-CSRFToken", token);
    xhr.upload.onprogress = function (event) {
      if (event.lengthComputable) { bar.value = Math.round(100 * event.loaded / event.total); }
    };
    xhr.onload = function () {
      var reply = {};
      try { reply = JSON.parse(xhr.responseText); } catch (e) { reply = { error: "the server answered " + xhr.status }; }
      if (xhr.status === 200 || xhr.status === 201) {
        bar.value = 100;
        item.dataset.state = "done";
        note.className = "ok";
        note.textContent = reply.message;
      } else {
        item.dataset.state = "refused";
        bar.hidden = true;
        note.className = "error";
        note.textContent = reply.error || ("upload failed (" + xhr.status + ")");
      }
      refreshRows();
    };
    xhr.onerror = function () {
      item.dataset.state = "refused";
      note.className = "error";
      note.textContent = "the upload did not reach the server; nothing was stored";
    };
    xhr.send(body);
  }

  function sendAll(files) {
    for (var i = 0; i < files.length; i++) { send(files[i]); }
  }

  input.addEventListener("change", function () {
    sendAll(input.files);
    input.value = "";
  });
  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (event) {
      event.preventDefault();
      zone.classList.add("over");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    zone.addEventListener(type, function (event) {
      event.preventDefault();
      zone.classList.remove("over");
    });
  });
  zone.addEventListener("drop", function (event) {
    if (event.dataTransfer && event.dataTransfer.files.length) { sendAll(event.dataTransfer.files); }
  });
})();
