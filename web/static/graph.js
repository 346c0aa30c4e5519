// Workflow graphs: each <figure class="graph" data-graph='{"nodes": [...], "edges": [...]}'> (the graph
// GET /api/workflows sends, from taskapp/domain/definitions/graph.py) becomes an SVG picture. dagre
// (vendor/dagre, MIT) lays the nodes out in layers; this draws them with classes of app.css only, so
// the strict content security policy holds (no inline style, no inline script). The list of edges in
// words stays beneath the picture.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var KINDS = ["next", "fan_out", "loop", "route"];

  function make(tag, attrs, parent) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, value, x, y, cls) {
    var t = make("text", { x: x, y: y, "class": cls, "text-anchor": "middle", "dominant-baseline": "central" }, parent);
    t.textContent = value;
    return t;
  }

  function nodeLines(n) {
    if (n.kind !== "stage") return [{ text: n.label, cls: "title" }];
    var lines = [{ text: n.label, cls: "title" }];
    var who = n.agent === n.label ? n.model : n.agent + " · " + n.model;
    if (who) lines.push({ text: who, cls: "sub" });
    if (n.tools && n.tools.length) lines.push({ text: "tools: " + n.tools.join(", "), cls: "sub" });
    if (n.fan_out) lines.push({ text: "× each item, at most " + n.fan_out.max_items, cls: "sub" });
    return lines;
  }

  function edgeLabel(e) {
    if (e.kind === "route") return e.default ? "otherwise" : "= " + e.value;
    if (e.kind === "loop") return "loop: at most " + e.max + (e.max_from ? " (≤ " + e.max_from + ")" : "");
    if (e.kind === "fan_out") return "fan-out";
    return "";
  }

  function measure(svg, lines) {
    var g = make("g", { "class": "measure" }, svg);
    var width = 0;
    lines.forEach(function (l) {
      var t = text(g, l.text, 0, 0, l.cls);
      width = Math.max(width, t.getComputedTextLength ? t.getComputedTextLength() : l.text.length * 7);
    });
    svg.removeChild(g);
    return width;
  }

  function curve(points) {
    // A smooth path through dagre's points (quadratic segments between midpoints).
    var d = "M" + points[0].x + "," + points[0].y;
    for (var i = 1; i < points.length - 1; i++) {
      var mx = (points[i].x + points[i + 1].x) / 2, my = (points[i].y + points[i + 1].y) / 2;
      d += " Q" + points[i].x + "," + points[i].y + " " + mx + "," + my;
    }
    var last = points[points.length - 1];
    return d + " L" + last.x + "," + last.y;
  }

  function draw(figure, index) {
    var data = JSON.parse(figure.getAttribute("data-graph"));
    var svg = make("svg", { "class": "graph-picture", role: "img" });
    var title = make("title", {}, svg);
    title.textContent = "Workflow graph: " + data.nodes.filter(function (n) { return n.kind === "stage"; })
      .map(function (n) { return n.label; }).join(", ");
    figure.insertBefore(svg, figure.firstChild);

    var defs = make("defs", {}, svg);
    KINDS.forEach(function (kind) {
      var m = make("marker", {
        id: "arrow-" + index + "-" + kind, viewBox: "0 0 10 10", refX: 9, refY: 5,
        markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse", "class": "arrow " + kind,
      }, defs);
      make("path", { d: "M0,0 L10,5 L0,10 z" }, m);
    });

    var g = new dagre.graphlib.Graph({ multigraph: true });
    g.setGraph({ rankdir: "TB", nodesep: 30, ranksep: 44, edgesep: 14, marginx: 8, marginy: 8 });
    var lineHeight = 16;
    data.nodes.forEach(function (n) {
      var lines = nodeLines(n);
      var width = Math.max(n.kind === "stage" ? 110 : 70, measure(svg, lines) + 24);
      g.setNode(n.id, { width: width, height: lines.length * lineHeight + 14, data: n, lines: lines });
    });
    data.edges.forEach(function (e, i) {
      var label = edgeLabel(e);
      var width = label ? measure(svg, [{ text: label, cls: "edge-label" }]) + 10 : 0;
      g.setEdge(e.source, e.target, {
        data: e, text: label, width: width, height: label ? 16 : 0, labelpos: "c",
        minlen: 1, weight: e.kind === "loop" ? 0 : 1,
      }, "e" + i);
    });
    dagre.layout(g);

    var drawing = make("g", {}, svg);
    var edges = make("g", { "class": "edges" }, drawing);
    g.edges().forEach(function (ref) {
      var edge = g.edge(ref);
      var e = edge.data;
      var group = make("g", { "class": "edge " + e.kind + (e.default ? " default" : "") }, edges);
      var tip = make("title", {}, group);
      tip.textContent = e.label || e.kind;
      var d, lx = edge.x, ly = edge.y;
      if (e.source === e.target) {  // a stage that loops on itself: an arc on its right side
        var n = g.node(e.source), right = n.x + n.width / 2;
        d = "M" + right + "," + (n.y - 8) + " C" + (right + 42) + "," + (n.y - 30) + " " +
          (right + 42) + "," + (n.y + 30) + " " + right + "," + (n.y + 8);
        lx = right + 40 + edge.width / 2;
        ly = n.y;
      } else {
        d = curve(edge.points);
      }
      make("path", { d: d, "marker-end": "url(#arrow-" + index + "-" + e.kind + ")" }, group);
      if (edge.text) {
        make("rect", { x: lx - edge.width / 2, y: ly - 8, width: edge.width, height: 16, rx: 3, "class": "label-bg" }, group);
        text(group, edge.text, lx, ly, "edge-label");
      }
    });

    var nodes = make("g", { "class": "nodes" }, drawing);
    g.nodes().forEach(function (id) {
      var node = g.node(id);
      var n = node.data;
      var group = make("g", {
        "class": "node " + n.kind + (n.fan_out ? " fan-out" : ""),
        "data-node": n.id,
        transform: "translate(" + (node.x - node.width / 2) + "," + (node.y - node.height / 2) + ")",
      }, nodes);
      if (n.fan_out) {  // a stack: one step per item
        make("rect", { x: 6, y: -6, width: node.width, height: node.height, rx: 6, "class": "behind" }, group);
        make("rect", { x: 3, y: -3, width: node.width, height: node.height, rx: 6, "class": "behind" }, group);
      }
      make("rect", { width: node.width, height: node.height, rx: n.kind === "stage" ? 6 : node.height / 2 }, group);
      node.lines.forEach(function (l, k) {
        text(group, l.text, node.width / 2, 7 + lineHeight / 2 + k * lineHeight, l.cls);
      });
    });
    // The picture's size: everything drawn (a self-loop's arc and label may reach past dagre's box).
    var box = drawing.getBBox(), pad = 6;
    var width = Math.ceil(box.width + 2 * pad), height = Math.ceil(box.height + 2 * pad);
    svg.setAttribute("viewBox", [Math.floor(box.x - pad), Math.floor(box.y - pad), width, height].join(" "));
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    figure.classList.add("drawn");
  }

  document.querySelectorAll("figure.graph[data-graph]").forEach(function (figure, i) {
    try {
      draw(figure, i);
    } catch (err) {  // the list in words stays
      figure.classList.add("not-drawn");
      if (window.console) console.warn("could not draw the workflow graph:", err);
    }
  });
})();
