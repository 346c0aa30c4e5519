// A run's page: its outcome, a timeline of its steps (each split into its phases on one time axis,
// with the batch it shared) and its place on its workflow's graph. It follows the run's event
// stream (SSE) and reads /runs/<id>/view.json again after each burst of events; between events,
// the phases still going grow with the clock. Without EventSource it polls the same JSON.
(function () {
  "use strict";
  var ui = window.taskappUI, el = ui.el;
  var FINAL = ["succeeded", "failed", "cancelled"];
  var view = JSON.parse(document.getElementById("run-data").textContent);
  var viewUrl = view.run.links.ui + "/view.json";
  var received = Date.now();  // when `view` was read: open phases grow from here
  var items = {};  // step id -> its <details> and the parts redrawn in place
  var PHASE_WORDS = {
    buffer: "in the batch buffer", dispatch: "batched, on its way", quota: "waiting for quota",
    call: "Gemini call", tool: "tool call", retry: "waiting to retry", queue: "waiting for a tool worker",
  };

  function finalStatus(s) { return FINAL.indexOf(s) >= 0; }
  function elapsed() { return finalStatus(view.run.status) ? 0 : Date.now() - received; }
  function axisMs() { return Math.max(1, view.axis_ms + elapsed()); }

  // --- the outcome ---
  function renderOutcome() {
    var run = view.run, out = view.outcome;
    var badge = document.getElementById("run-status");
    badge.textContent = out.label;
    badge.className = "status " + run.status + " tone-" + out.tone;
    badge.setAttribute("data-status", run.status);
    var reason = document.getElementById("outcome-reason");
    reason.textContent = out.reason || "";
    reason.className = "reason tone-" + out.tone;
    reason.hidden = !out.reason;
    var box = document.getElementById("answer");
    box.textContent = "";
    var output = run.output;
    if (output) {
      if (typeof output.title === "string") el("h3", output.title, null, box);
      var main = ["answer", "summary", "reply", "draft"].filter(function (k) { return typeof output[k] === "string"; })[0];
      if (main) el("p", output[main], "answer", box);
      var rest = Object.keys(output).filter(function (k) { return k !== "title" && k !== main; });
      if (rest.length) {
        var dl = el("dl", null, "output-fields", box);
        rest.forEach(function (k) {
          var v = output[k];
          var div = el("div", null, null, dl);
          el("dt", k, null, div);
          el("dd", typeof v === "string" ? v : JSON.stringify(v), null, div);
        });
      }
    } else if (run.status === "failed" || run.status === "cancelled") {
      el("p", "No answer: the run " + run.status + ".", "hint", box);
    } else {
      el("p", "Working… the answer appears here when the run ends.", "hint", box);
    }
    var t = run.totals;
    document.getElementById("fact-duration").textContent = ui.duration(view.duration_ms + elapsed());
    document.getElementById("fact-steps").textContent = t.steps_done + " of " + t.steps;
    document.getElementById("fact-calls").textContent = t.llm_calls;
    document.getElementById("fact-tokens").textContent = t.tokens_in + t.tokens_out;
    var cost = document.getElementById("fact-cost");
    cost.textContent = ui.moneyTotal(t.cost_usd);
    cost.title = ui.moneyExact(t.cost_usd);
    if (finalStatus(run.status)) document.getElementById("cancel-form").hidden = true;
  }

  // --- the timeline ---
  function niceStep(total) {
    var target = total / 5, steps = [100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 15000, 30000, 60000, 120000, 300000, 600000];
    for (var i = 0; i < steps.length; i++) if (steps[i] >= target) return steps[i];
    return 3600000;
  }
  function renderAxis(total) {
    var axis = document.getElementById("axis");
    axis.textContent = "";
    var step = niceStep(total);
    for (var t = 0; t <= total; t += step) {
      var tick = el("span", ui.duration(t).replace(".0 s", " s"), "tick", axis);
      tick.style.left = (100 * t / total) + "%";
    }
  }

  function fansOut(stage) {
    return ((view.graph && view.graph.nodes) || []).some(function (n) { return n.id === stage && n.fan_out; });
  }
  function stepTitle(s) {
    var name = s.stage && s.stage !== s.agent ? s.stage + " · " + s.agent : s.agent;
    if (s.item !== null && s.item !== undefined && fansOut(s.stage)) name += " #" + (s.item + 1);
    return name;
  }

  function pre(parent, title, value) {
    var sec = el("div", null, "io", parent);
    el("h4", title, null, sec);
    el("pre", JSON.stringify(value, null, 2), null, sec);
  }

  function batchWords(s) {
    var b = s.batch;
    if (!b) return s.kind === "tool" ? "a tool call, run on the tools queue" : "not batched yet";
    var words = "batch " + b.id.slice(0, 8) + ": " + b.size + " step" + (b.size === 1 ? "" : "s") + " in one call";
    if (b.steps_of_other_runs) {
      words += ", " + b.steps_of_other_runs + " of them from " + b.other_runs + " other run" + (b.other_runs === 1 ? "" : "s");
    } else if (b.size > 1) {
      words += ", all from this run";
    } else {
      words += " (no company)";
    }
    return words + " · flushed: " + b.reason;
  }

  function renderBody(s, body) {
    body.textContent = "";
    var facts = el("ul", null, "step-facts", body);
    el("li", batchWords(s), "batch-info", facts);
    s.phases.forEach(function (p) {
      el("li", PHASE_WORDS[p.kind] + ": " + ui.duration(p.open ? p.ms + elapsed() : p.ms) + (p.open ? " (so far)" : ""), "phase-line " + p.kind, facts);
    });
    el("li", "tokens " + s.tokens_in + " in, " + s.tokens_out + " out · " + ui.money(s.cost_usd) + " · attempts " + s.attempts, null, facts);
    if (s.error) { var err = el("div", null, "io", body); el("h4", "Error", null, err); el("p", s.error, "error", err); }
    pre(body, "Input", s.input);
    if (s.output) pre(body, "Output", s.output);
    if (s.batch && s.batch.calls.length) {
      var calls = el("div", null, "io", body);
      el("h4", "Calls of its batch", null, calls);
      var list = el("ol", null, "calls", calls);
      s.batch.calls.forEach(function (c) {
        el("li", (c.repair ? "repair call" : "batch call") + " (" + c.steps + " step" + (c.steps === 1 ? "" : "s") + "): " +
          c.status + ", " + ui.duration(c.latency_ms) + ", " + c.tokens_in + " + " + c.tokens_out + " tokens, " + ui.money(c.cost_usd) +
          (c.error ? " · " + c.error : ""), null, list);
      });
    }
  }

  function drawBar(s, track, total) {
    track.textContent = "";
    s.phases.forEach(function (p) {
      var end = p.open ? p.end_ms + elapsed() : p.end_ms;
      var seg = el("span", null, "phase " + p.kind + (p.open ? " open" : ""), track);
      seg.style.left = (100 * p.start_ms / total) + "%";
      seg.style.width = (100 * Math.max(0, end - p.start_ms) / total) + "%";
      seg.title = PHASE_WORDS[p.kind] + ": " + ui.duration(end - p.start_ms);
    });
  }

  function stepItem(s) {
    var item = items[s.id];
    if (!item) {
      var details = el("details", null, "step");
      details.setAttribute("data-step", s.id);
      var summary = el("summary", null, null, details);
      var label = el("span", null, "step-label", summary);
      var track = el("span", null, "track", summary);
      var side = el("span", null, "step-side", summary);
      var body = el("div", null, "step-body", details);
      item = items[s.id] = { details: details, label: label, track: track, side: side, body: body };
      document.getElementById("steps").appendChild(details);
    }
    return item;
  }

  function renderTimeline() {
    var steps = view.run.steps, total = axisMs();
    document.getElementById("timeline-empty").hidden = steps.length > 0;
    renderAxis(total);
    steps.forEach(function (s) {
      var item = stepItem(s);
      item.details.className = "step " + s.status + " kind-" + s.kind;
      item.label.textContent = "";
      el("span", s.seq, "seq", item.label);
      el("span", stepTitle(s), "name", item.label).title = stepTitle(s);
      el("span", s.status, "status " + s.status, item.label);
      drawBar(s, item.track, total);
      var b = s.batch;
      item.side.textContent = b ? "×" + b.size + (b.steps_of_other_runs ? " (+" + b.other_runs + " run" + (b.other_runs === 1 ? "" : "s") + ")" : "") : (s.kind === "tool" ? "tool" : "");
      item.side.title = batchWords(s);
      var text = JSON.stringify(s);
      if (text !== item.shown) {  // redraw an open step's details only when they changed
        item.shown = text;
        renderBody(s, item.body);
      }
    });
  }

  // --- the graph ---
  function renderStages() {
    var st = view.stages, words = document.getElementById("stage-words");
    if (!words) return;
    words.textContent = "";
    ui.stageBar(st, view.run.status, words);
    Object.keys(st.states).forEach(function (name) {
      document.querySelectorAll('svg.graph-picture .node[data-node="' + name + '"]').forEach(function (node) {
        node.setAttribute("class", node.getAttribute("class").replace(/ state-\w+/g, "") + " state-" + st.states[name]);
      });
    });
  }

  function render() { renderOutcome(); renderTimeline(); renderStages(); }

  // --- live ---
  var pending = null;
  function refresh() {
    return ui.getJSON(viewUrl).then(function (v) { view = v; received = Date.now(); render(); }, function () {});
  }
  function refreshSoon() {  // coalesce a burst of events into one read
    if (pending) return;
    pending = setTimeout(function () { pending = null; refresh(); }, 150);
  }
  function poll() {
    if (finalStatus(view.run.status)) return;
    refresh().then(function () { setTimeout(poll, 1000); });
  }
  function follow() {
    var source = new EventSource(view.run.links.events, { withCredentials: true });
    ["run.started", "step.queued", "step.batched", "step.started", "step.succeeded",
     "step.failed", "step.retrying", "quota.wait"].forEach(function (t) { source.addEventListener(t, refreshSoon); });
    ["run.succeeded", "run.failed", "run.cancelled"].forEach(function (t) {
      source.addEventListener(t, function () { source.close(); refresh(); });
    });
  }
  function tick() {  // the phases still going grow between events (the bars only: open details stay as they are)
    if (finalStatus(view.run.status)) return;
    var total = axisMs();
    renderAxis(total);
    view.run.steps.forEach(function (s) { if (items[s.id]) drawBar(s, items[s.id].track, total); });
    document.getElementById("fact-duration").textContent = ui.duration(view.duration_ms + elapsed());
    setTimeout(tick, 500);
  }

  render();
  if (!finalStatus(view.run.status)) {
    if (window.EventSource) { follow(); } else { setTimeout(poll, 500); }
    setTimeout(tick, 500);
  }
})();
