// The runs list keeps itself current: every few seconds it reads the same page of runs as JSON
// (/runs.json with the page's filters and cursor) and redraws the rows. It stops while the tab
// is hidden, and for good once the session has ended (the JSON answers with the sign-in page).
(function () {
  "use strict";
  var ui = window.taskappUI, el = ui.el;
  var POLL_MS = 3000;
  var box = document.getElementById("runs");
  var body = document.getElementById("runs-body");
  var table = box.querySelector("table.runs");
  var live = document.getElementById("runs-live");
  var url = box.getAttribute("data-poll");
  var timer = null, stopped = false;

  function row(r) {
    var tr = el("tr", null, "run-row " + r.status);
    tr.setAttribute("data-run", r.id);
    var first = el("td", null, "run-cell", tr);
    var a = el("a", null, null, first);
    a.href = r.url;
    el("code", r.id.slice(0, 8), null, a);
    first.appendChild(document.createTextNode(" "));
    el("span", r.input_preview, "preview", first);
    function cell(label, text, cls) {
      var td = el("td", text, cls, tr);
      td.setAttribute("data-label", label);
      return td;
    }
    cell("Workflow", r.workflow);
    el("span", r.outcome.label, "status " + r.status + " tone-" + r.outcome.tone, cell("Status"));
    ui.stageBar(r.stages, r.status, cell("Stages"));
    cell("Duration", ui.duration(r.duration_ms), "num");
    cell("Cost", ui.moneyTotal(r.cost_usd), "num").title = ui.moneyExact(r.cost_usd);
    cell("Created", r.created_at.slice(0, 19).replace("T", " "), "when");
    return tr;
  }

  var shown = null;
  function render(data) {
    live.textContent = "updated " + new Date().toLocaleTimeString();
    var text = JSON.stringify(data.runs);
    if (text === shown) return;  // nothing changed: leave the rows (and the keyboard focus) alone
    shown = text;
    var focused = document.activeElement && body.contains(document.activeElement)
      ? document.activeElement.closest("tr").getAttribute("data-run") : null;
    body.textContent = "";
    data.runs.forEach(function (r) { body.appendChild(row(r)); });
    if (focused) {  // keep the keyboard where it was
      var again = body.querySelector('tr[data-run="' + focused + '"] a');
      if (again) again.focus();
    }
    table.hidden = data.runs.length === 0;
    var empty = document.getElementById("runs-empty");
    if (empty) empty.hidden = data.runs.length > 0;
  }

  function tick() {
    timer = null;
    if (stopped || document.hidden) return;
    ui.getJSON(url).then(render, function (err) {
      if (err && err.status === 0) return;
      if (err && (err.status === 200 || err.status === 401 || err.status === 302)) {
        stopped = true;  // signed out: the page itself will say so on reload
        live.textContent = "not updating: signed out";
      }
    }).then(schedule);
  }
  function schedule() { if (!stopped && timer === null) timer = setTimeout(tick, POLL_MS); }
  document.addEventListener("visibilitychange", function () { if (!document.hidden) schedule(); });
  schedule();
})();
