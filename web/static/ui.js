// Helpers the pages share: elements, durations and money formatted as web/formatting.py does.
(function () {
  "use strict";
  function el(tag, text, cls, parent) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null && text !== "") node.textContent = String(text);
    if (cls) node.className = cls;
    if (parent) parent.appendChild(node);
    return node;
  }
  function pad(n) { return n < 10 ? "0" + n : String(n); }
  function duration(ms) {
    if (ms === null || ms === undefined) return "";
    if (ms < 1000) return Math.floor(ms) + " ms";
    var s = ms / 1000;
    if (s < 60) return s.toFixed(1) + " s";
    var m = Math.floor(s / 60), sec = Math.floor(s) % 60;
    if (m < 60) return m + " min " + pad(sec) + " s";
    return Math.floor(m / 60) + " h " + pad(m % 60) + " min";
  }
  function money(usd) {
    if (usd === null || usd === undefined) return "";
    if (usd === 0) return "$0";
    if (usd < 0.01) return "$" + usd.toFixed(6);
    if (usd < 1) return "$" + usd.toFixed(4);
    return "$" + usd.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  // A run's or a team's total: to the cent, half up (web/formatting.py money_total); the exact amount
  // (moneyExact, to 1e-8 dollars) goes in the element's title.
  function moneyTotal(usd) {
    if (usd === null || usd === undefined) return "";
    var cents = Math.round(usd * 100 + 1e-9) / 100;
    return "$" + cents.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  function moneyExact(usd) {
    if (usd === null || usd === undefined) return "";
    return "$" + usd.toFixed(8);
  }
  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (resp) {
        var type = resp.headers.get("Content-Type") || "";
        if (!resp.ok || type.indexOf("application/json") < 0) {
          var err = new Error("HTTP " + resp.status);
          err.status = resp.status;
          throw err;
        }
        return resp.json();
      });
  }
  // A workflow's stages as a bar of segments: done / current / failed / stopped / pending / skipped.
  function stageBar(stages, status, parent) {
    var wrap = el("span", null, "stages", parent);
    var bar = el("span", null, "stage-bar " + status, wrap);
    var total = stages.total || 0;
    var words = total ? stages.done + " of " + total + " stages" : "no stages";
    function where() {
      return stages.current ? " at " + stages.current : stages.last_done ? " after " + stages.last_done : "";
    }
    if (status === "failed") words += ", failed" + where();
    else if (status === "cancelled") words += ", cancelled" + where();
    else if (stages.current && status === "running") words += ", now " + stages.current;
    if (stages.loops) words += " (" + stages.loops + " loop" + (stages.loops === 1 ? "" : "s") + " back)";
    bar.setAttribute("role", "img");
    bar.setAttribute("aria-label", words);
    for (var i = 0; i < total; i++) {
      var kind = i < stages.done ? "done" : "pending";
      if (i === stages.done && (stages.current || status === "failed" || status === "cancelled")) {
        kind = status === "failed" ? "failed" : status === "cancelled" ? "stopped" : "current";
      }
      el("i", null, "seg " + kind, bar);
    }
    el("span", words, "stage-words", wrap);
    return wrap;
  }
  window.taskappUI = { el: el, duration: duration, money: money, moneyTotal: moneyTotal, moneyExact: moneyExact, getJSON: getJSON, stageBar: stageBar };
})();
