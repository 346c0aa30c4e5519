// The dashboard's time series, drawn with the vendored uPlot (web/static/vendor/uplot): axes with
// units and time, a legend with the values under the cursor. The data comes with the page and is
// read again from /dashboard/series.json every 15 s; the charts follow the width of their card.
(function () {
  "use strict";
  var node = document.getElementById("series-data");
  var data = JSON.parse(node.textContent);
  var url = node.getAttribute("data-url");
  var COLORS = ["#2457d6", "#b26b00", "#17693a", "#6a2ca3", "#a12525", "#0f7d8c"];
  var charts = {};

  function fmt(unit) {
    return function (u, v) {
      if (v === null || v === undefined) return "—";
      if (unit === "$") return "$" + (v < 0.01 ? v.toFixed(5) : v.toFixed(3));
      return (Math.abs(v) >= 100 ? Math.round(v) : Math.round(v * 100) / 100) + (unit ? " " + unit : "");
    };
  }
  function line(label, color, unit, dash) {
    // Points always shown: a bucket with a value between empty ones is a point, not a line.
    var s = { label: label, stroke: color, width: 2, value: fmt(unit), spanGaps: false, points: { show: true, size: 5, fill: color } };
    if (dash) { s.dash = [6, 4]; s.width = 1.5; s.points = { show: false }; }
    return s;
  }
  function limitSeries(value) { return data.t.map(function () { return value; }); }

  function specs() {
    var models = Object.keys(data.models);
    var req = [], reqSeries = [], tok = [], tokSeries = [];
    models.forEach(function (m, i) {
      var color = COLORS[i % COLORS.length], lim = (data.limits[m] || {});
      req.push(data.models[m].requests_per_min); reqSeries.push(line(m, color, "/min"));
      tok.push(data.models[m].input_tokens_per_min); tokSeries.push(line(m, color, "/min"));
      if (lim.rpm) { req.push(limitSeries(lim.rpm)); reqSeries.push(line(m + " limit", color, "/min", true)); }
      if (lim.tpm) { tok.push(limitSeries(lim.tpm)); tokSeries.push(line(m + " limit", color, "/min", true)); }
    });
    return {
      throughput: { y: "per minute", cols: [data.steps_per_min, data.calls_per_min],
        series: [line("steps", COLORS[0], "/min"), line("Gemini calls", COLORS[1], "/min")] },
      batch: { y: "steps per call", cols: [data.mean_batch_size], series: [line("mean batch size", COLORS[2], "steps")] },
      requests: { y: "requests / min", cols: req, series: reqSeries, log: true },
      tokens: { y: "tokens / min", cols: tok, series: tokSeries, log: true },
      "call-latency": { y: "ms", cols: [data.call_p50_ms, data.call_p95_ms],
        series: [line("p50", COLORS[0], "ms"), line("p95", COLORS[4], "ms")] },
      "run-latency": { y: "seconds", cols: [data.run_p50_s, data.run_p95_s],
        series: [line("p50", COLORS[0], "s"), line("p95", COLORS[4], "s")] },
      cost: { y: "$ / hour", cols: [data.cost_per_hour], series: [line("cost", COLORS[3], "$")] },
    };
  }

  function size(target) {
    var width = Math.max(240, Math.floor(target.getBoundingClientRect().width));
    return { width: width, height: Math.round(Math.min(260, Math.max(180, width * 0.45))) };
  }

  function draw() {
    var all = specs();
    Object.keys(all).forEach(function (id) {
      var spec = all[id], target = document.getElementById("chart-" + id);
      if (!target) return;
      var cols = [data.t].concat(spec.cols);
      if (charts[id] && charts[id].series.length === cols.length) {
        charts[id].setData(cols);
        return;
      }
      if (charts[id]) charts[id].destroy();
      var dims = size(target);
      var opts = {
        width: dims.width, height: dims.height,
        scales: {
          x: { time: true },
          y: spec.log
            ? { distr: 3, log: 10, range: function (u, min, max) { return [0.5, Math.max(max || 1, 1) * 2]; } }
            : { range: function (u, min, max) { return [0, Math.max(max || 0, 1e-9) * 1.15]; } },
        },
        series: [{ label: "time" }].concat(spec.series),
        axes: [
          { stroke: "#5d6678", grid: { stroke: "#eef1f6" } },
          { stroke: "#5d6678", grid: { stroke: "#eef1f6" }, label: spec.y, size: 56,
            values: function (u, vals) { return vals.map(function (v) { return v === null ? "" : (v >= 1000 ? (v / 1000) + "k" : String(Math.round(v * 1000) / 1000)); }); } },
        ],
        legend: { live: true },
        cursor: { drag: { x: false, y: false } },
      };
      if (spec.log) {  // zero cannot be drawn on a log scale: leave a gap there
        cols = cols.map(function (c, i) { return i === 0 ? c : c.map(function (v) { return v > 0 ? v : null; }); });
      }
      target.textContent = "";
      charts[id] = new uPlot(opts, cols, target);
    });
  }

  function refresh() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok || (r.headers.get("Content-Type") || "").indexOf("application/json") < 0) throw new Error(String(r.status));
        return r.json();
      })
      .then(function (d) {
        data = d;
        draw();
        document.getElementById("charts-live").textContent = "updated " + new Date().toLocaleTimeString();
      }, function () { /* the next refresh tries again */ })
      .then(function () { setTimeout(refresh, 15000); });
  }

  var resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () {
      Object.keys(charts).forEach(function (id) {
        var target = document.getElementById("chart-" + id);
        charts[id].setSize(size(target));
      });
    }, 150);
  });

  draw();
  window.taskappCharts = charts;
  setTimeout(refresh, 15000);
})();
