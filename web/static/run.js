// Run detail: render the run; follow its event stream (SSE) and re-read the run on each
// event. The browser resumes a dropped stream with Last-Event-ID on its own; without
// EventSource we fall back to polling the JSON API.
(function () {
  "use strict";
  var FINAL = ["succeeded", "failed", "cancelled"];
  var run = JSON.parse(document.getElementById("run-data").textContent);

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function ms(v) { return v === null || v === undefined ? "" : v + " ms"; }

  function renderSteps(steps) {
    var body = document.getElementById("steps");
    body.textContent = "";
    steps.forEach(function (s) {
      var tr = el("tr");
      tr.appendChild(el("td", s.seq));
      tr.appendChild(el("td", s.agent));
      tr.appendChild(el("td", s.model));
      var st = el("td"); st.appendChild(el("span", s.status, "status " + s.status)); tr.appendChild(st);
      tr.appendChild(el("td", s.batch_id ? s.batch_id.slice(0, 8) : ""));
      tr.appendChild(el("td", ms(s.wait_ms) + (s.buffer_wait_ms === null || s.buffer_wait_ms === undefined
        ? "" : " (batching " + s.buffer_wait_ms + " ms)")));
      tr.appendChild(el("td", ms(s.latency_ms)));
      tr.appendChild(el("td", s.tokens_in + s.tokens_out));
      tr.appendChild(el("td", "$" + s.cost_usd.toFixed(6)));
      tr.title = s.error || JSON.stringify(s.output || s.input);
      body.appendChild(tr);
    });
  }

  function renderOutput(r) {
    var out = document.getElementById("output");
    out.textContent = "";
    if (r.status === "failed" || r.status === "cancelled") {
      out.appendChild(el("p", r.error || r.status, "error"));
    } else if (r.output) {
      if (r.output.title) out.appendChild(el("h3", r.output.title));
      if (r.output.answer) out.appendChild(el("p", r.output.answer, "answer"));
      out.appendChild(el("pre", JSON.stringify(r.output, null, 2)));
    } else {
      out.appendChild(el("p", "Working…", "hint"));
    }
  }

  function render(r) {
    var badge = document.getElementById("run-status");
    badge.textContent = r.status;
    badge.className = "status " + r.status;
    renderSteps(r.steps);
    var t = r.totals;
    document.getElementById("totals").textContent =
      t.steps_done + "/" + t.steps + " steps · " + t.llm_calls + " Gemini calls · " +
      (t.tokens_in + t.tokens_out) + " tokens · $" + t.cost_usd.toFixed(6);
    renderOutput(r);
    if (FINAL.indexOf(r.status) >= 0) document.getElementById("cancel-form").hidden = true;
  }

  var pending = null;
  function refresh() {
    return fetch(run.links.self, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (resp) { return resp.ok ? resp.json() : null; })
      .then(function (r) { if (r) { run = r; render(r); } })
      .catch(function () { /* transient: the next event or poll reads again */ });
  }
  function refreshSoon() {  // coalesce a burst of events into one read
    if (pending) return;
    pending = setTimeout(function () { pending = null; refresh(); }, 150);
  }

  function poll() {
    if (FINAL.indexOf(run.status) >= 0) return;
    refresh().then(function () { setTimeout(poll, 1000); });
  }

  function follow() {
    var source = new EventSource(run.links.events, { withCredentials: true });
    var types = ["run.started", "step.queued", "step.batched", "step.started", "step.succeeded",
                 "step.failed", "step.retrying", "quota.wait"];
    types.forEach(function (t) { source.addEventListener(t, refreshSoon); });
    ["run.succeeded", "run.failed", "run.cancelled"].forEach(function (t) {
      source.addEventListener(t, function () { source.close(); refresh(); });
    });
  }

  render(run);
  if (FINAL.indexOf(run.status) < 0) {
    if (window.EventSource) { follow(); } else { setTimeout(poll, 500); }
  }
})();
