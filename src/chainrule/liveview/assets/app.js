// chainrule live: the page. Plain JavaScript, no libraries, nothing fetched but from this server.
//
// The training runs in Python. This page asks for the latest frame (a long poll: the server answers
// as soon as there is a newer one), draws it, and asks again. Controls are POSTed as small JSON
// commands; the server checks every value and answers a refusal with a message shown at the top.
"use strict";

(function () {
  var TOKEN = document.querySelector('meta[name="chainrule-token"]').content;
  var HEADERS = { "X-Chainrule-Token": TOKEN };
  var COLORS = ["#f59322", "#0877bd", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];
  var $ = function (id) { return document.getElementById(id); };

  var state = {
    frame: null, frames: 0, layout: null, layoutWanted: 0, layoutLoading: false,
    boxes: [], zoom: null, walk: null, walkPos: 0, archKey: "", pinned: null, errorUntil: 0,
  };
  window.chainruleLive = state;          // for a look from the browser's console (and the tests)

  function fmt(x, digits) {
    if (x === null || x === undefined) return "nan";
    var d = digits === undefined ? 4 : digits;
    // As chainrule.text.number writes numbers: fixed decimals, scientific from a million on.
    var s = Math.abs(x) >= 1e6 ? x.toExponential(d).replace(/e([+-])(\d)$/, "e$10$2") : x.toFixed(d);
    return /^-0\.0*$/.test(s) ? s.slice(1) : s;  // -0.0000 is 0.0000, as Python's captions print it
  }

  // --- talking to the server ----------------------------------------------------------------------

  function showMessage(text, isError) {
    var box = $("message");
    box.textContent = text || "";
    box.className = isError ? "error" : "";
    state.errorUntil = isError ? Date.now() + 8000 : 0;
  }

  function send(body) {
    return fetch("/api/control", {
      method: "POST", headers: Object.assign({ "Content-Type": "application/json" }, HEADERS),
      body: JSON.stringify(body), cache: "no-store",
    }).then(function (r) {
      return r.json().then(function (answer) {
        if (!r.ok) { showMessage(answer.error || ("refused: " + r.status), true); return false; }
        if (state.errorUntil) showMessage("", false);
        return true;
      });
    }).catch(function () { showMessage("could not reach chainrule live: is it still running?", true); return false; });
  }

  function poll() {
    var after = state.frame ? state.frame.v : -1;
    fetch("/api/frame?after=" + after, { headers: HEADERS, cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error("status " + r.status); return r.json(); })
      .then(function (frame) {
        if (!state.frame || frame.v !== state.frame.v) render(frame);
        setTimeout(poll, 0);
      })
      .catch(function () {
        showMessage("lost the connection to chainrule live: is it still running? (retrying)", true);
        setTimeout(poll, 1000);
      });
  }

  // --- one frame ------------------------------------------------------------------------------------

  function render(frame) {
    var started = performance.now();
    state.frame = frame;
    state.frames += 1;
    var c = frame.curves, n = c.loss.length;
    $("step").textContent = String(frame.step);
    $("loss").textContent = n ? fmt(c.loss[n - 1]) : "\u2013";
    $("acc").textContent = n ? fmt(100 * c.acc[n - 1], 1) + "%" : "\u2013";
    var m = c.test_loss.length;
    var hasTest = frame.points.test.indexOf(true) >= 0;
    $("test").textContent = m ? fmt(c.test_loss[m - 1]) + " / " + fmt(100 * c.test_acc[m - 1], 1) + "%" : (hasTest ? "\u2013" : "none");
    $("status").textContent = frame.running ? "training" : "paused";
    $("play").textContent = frame.running ? "pause" : "play";
    if (Date.now() > state.errorUntil) showMessage(frame.notice, false);
    syncControls(frame);
    drawBoundary(frame);
    drawCurves(frame);
    drawNetwork(frame);
    updateWalk(frame);
    updateGraph(frame);
    state.renderMs = performance.now() - started;   // how long drawing one frame took
  }

  function syncControls(frame) {
    var s = frame.settings;
    setIfIdle($("lr"), String(s.lr));
    setIfIdle($("batch-size"), String(s.batch_size));
    setIfIdle($("speed"), String(Math.min(300, s.speed)));
    $("speed-value").textContent = String(s.speed);
    setIfIdle($("hidden"), frame.hidden.join(","));
    setIfIdle($("activation"), frame.activation);
    var select = $("add-class");
    if (select.options.length !== frame.n_classes) {
      select.innerHTML = "";
      for (var k = 0; k < frame.n_classes; k++) {
        var option = document.createElement("option");
        option.value = String(k);
        option.textContent = "class " + k;
        select.appendChild(option);
      }
    }
    var p = frame.points, train = 0;
    for (var i = 0; i < p.test.length; i++) if (!p.test[i]) train++;
    $("points-count").textContent = "points: " + train + " train, " + (p.test.length - train) + " test; selected #" + p.selected;
    $("setup").textContent = frame.loss_name + " loss, " + frame.optimizer + ", MLP(" + frame.arch.join(", ") + ")";
  }

  function setIfIdle(input, value) {
    if (document.activeElement !== input && !input.classList.contains("bad")) input.value = value;
  }

  // --- the decision boundary and the data ----------------------------------------------------------

  var grid = document.createElement("canvas");

  function hexToRgb(hex) {
    return [parseInt(hex.slice(1, 3), 16), parseInt(hex.slice(3, 5), 16), parseInt(hex.slice(5, 7), 16)];
  }

  function toCanvas(frame, x, y, canvas) {
    var e = frame.grid.extent;
    return [(x - e[0]) / (e[1] - e[0]) * canvas.width, (e[3] - y) / (e[3] - e[2]) * canvas.height];
  }

  function drawBoundary(frame) {
    var g = frame.grid, n = g.n, canvas = $("boundary"), ctx = canvas.getContext("2d");
    grid.width = n; grid.height = n;
    var gctx = grid.getContext("2d"), image = gctx.createImageData(n, n);
    var rgb = COLORS.map(hexToRgb);
    for (var i = 0; i < n * n; i++) {
      var v = g.values[i], color, strength;
      if (g.kind === "score") {
        v = v === null ? 0 : v;
        color = rgb[v > 0 ? 1 : 0]; strength = 0.15 + 0.55 * Math.abs(v);
      } else {
        color = rgb[v % rgb.length]; strength = 0.45;
      }
      for (var ch = 0; ch < 3; ch++) image.data[4 * i + ch] = Math.round(255 + (color[ch] - 255) * strength);
      image.data[4 * i + 3] = 255;
    }
    gctx.putImageData(image, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(grid, 0, 0, canvas.width, canvas.height);
    var p = frame.points;
    for (var k = 0; k < p.xy.length; k++) {
      var at = toCanvas(frame, p.xy[k][0], p.xy[k][1], canvas);
      ctx.beginPath();
      ctx.arc(at[0], at[1], 4, 0, 2 * Math.PI);
      ctx.fillStyle = p.test[k] ? "#ffffff" : COLORS[p.label[k] % COLORS.length];
      ctx.fill();
      ctx.lineWidth = p.test[k] ? 2 : 1;
      ctx.strokeStyle = p.test[k] ? COLORS[p.label[k] % COLORS.length] : "#ffffff";
      ctx.stroke();
    }
    var s = p.xy[p.selected];
    if (s) {
      var sat = toCanvas(frame, s[0], s[1], canvas);
      ctx.beginPath();
      ctx.arc(sat[0], sat[1], 8, 0, 2 * Math.PI);
      ctx.lineWidth = 2; ctx.strokeStyle = "#000";
      ctx.stroke();
    }
  }

  function nearestPoint(frame, px, py) {
    var best = -1, bestD = 49, p = frame.points, canvas = $("boundary");
    for (var k = 0; k < p.xy.length; k++) {
      var at = toCanvas(frame, p.xy[k][0], p.xy[k][1], canvas);
      var d = (at[0] - px) * (at[0] - px) + (at[1] - py) * (at[1] - py);
      if (d < bestD) { bestD = d; best = k; }
    }
    return best;
  }

  $("boundary").addEventListener("click", function (event) {
    var frame = state.frame;
    if (!frame) return;
    var canvas = $("boundary"), rect = canvas.getBoundingClientRect();
    var px = (event.clientX - rect.left) * canvas.width / rect.width;
    var py = (event.clientY - rect.top) * canvas.height / rect.height;
    var hit = nearestPoint(frame, px, py);
    var tool = document.querySelector('input[name="tool"]:checked').value;
    if (tool === "select") {
      if (hit >= 0) send({ action: "select", index: hit });
      return;
    }
    if (hit >= 0) { send({ action: "remove_point", index: hit }); return; }
    var e = frame.grid.extent;
    send({ action: "add_point", x: e[0] + px / canvas.width * (e[1] - e[0]),
           y: e[3] - py / canvas.height * (e[3] - e[2]), label: parseInt($("add-class").value, 10) });
  });

  // --- loss and accuracy curves ---------------------------------------------------------------------

  function drawCurves(frame) {
    var canvas = $("curves"), ctx = canvas.getContext("2d"), c = frame.curves;
    var W = canvas.width, H = canvas.height, left = 42, right = 8, half = (H - 30) / 2;
    ctx.clearRect(0, 0, W, H);
    ctx.font = "10px Helvetica, Arial, sans-serif";
    var s0 = 0, s1 = Math.max(1, frame.step - 1);
    function sx(s) { return left + (s - s0) / Math.max(1, s1 - s0) * (W - left - right); }
    var top = 0;
    c.loss.concat(c.test_loss).forEach(function (v) { if (v !== null && v > top) top = v; });
    top = top > 0 ? top * 1.05 : 1;
    function plot(xs, ys, y0, h, scale, color, dashed) {
      ctx.beginPath(); ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.setLineDash(dashed ? [5, 3] : []);
      var started = false;
      for (var i = 0; i < xs.length; i++) {
        if (ys[i] === null) continue;
        var y = y0 + h - Math.min(1, ys[i] / scale) * h;
        if (started) ctx.lineTo(sx(xs[i]), y); else { ctx.moveTo(sx(xs[i]), y); started = true; }
      }
      ctx.stroke(); ctx.setLineDash([]);
    }
    [[6, "loss", top, c.loss, c.test_loss], [half + 18, "accuracy", 1, c.acc, c.test_acc]].forEach(function (p) {
      var y0 = p[0];
      ctx.strokeStyle = "#ccc"; ctx.lineWidth = 1;
      ctx.strokeRect(left, y0, W - left - right, half);
      ctx.fillStyle = "#555"; ctx.textAlign = "right";
      ctx.fillText(p[1] === "accuracy" ? "100%" : fmt(p[2], 2), left - 4, y0 + 8);
      ctx.fillText(p[1] === "accuracy" ? "0%" : "0", left - 4, y0 + half);
      ctx.save(); ctx.translate(10, y0 + half / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center";
      ctx.fillText(p[1], 0, 0); ctx.restore();
      plot(c.step, p[3], y0, half, p[2], "#0877bd", false);
      plot(c.test_step, p[4], y0, half, p[2], "#f59322", true);
    });
    ctx.fillStyle = "#555"; ctx.textAlign = "left";
    ctx.fillText("step " + s0, left, H - 2);
    ctx.textAlign = "right";
    ctx.fillText("step " + frame.step, W - right, H - 2);
  }

  // --- the network ------------------------------------------------------------------------------------

  var SVGNS = "http://www.w3.org/2000/svg";
  var net = { edges: [], neurons: [], inputs: [] };

  function svgEl(name, attrs, parent) {
    var el = document.createElementNS(SVGNS, name);
    for (var key in attrs) el.setAttribute(key, attrs[key]);
    parent.appendChild(el);
    return el;
  }

  // Named as chainrule names them (nn.named_parameters), counting from 0: x0, L0.N3, L1.N2.w4.
  function neuronName(layer, j) { return layer === 0 ? "x" + j : "L" + (layer - 1) + ".N" + j; }

  function buildNetwork(arch) {
    var svg = $("network");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    net = { edges: [], neurons: [], inputs: [], pos: [] };
    var W = 400, H = 330, cols = arch.length;
    for (var l = 0; l < cols; l++) {
      var n = arch[l], gap = Math.min(40, (H - 40) / n), x = 28 + l * (W - 56) / (cols - 1), col = [];
      for (var j = 0; j < n; j++) col.push([x, 20 + (H - 30) / 2 - gap * (n - 1) / 2 + j * gap, Math.max(3, Math.min(12, gap * 0.38))]);
      net.pos.push(col);
    }
    var edgeGroup = svgEl("g", {}, svg), hitGroup = svgEl("g", {}, svg), nodeGroup = svgEl("g", {}, svg);
    var offset = 0;
    for (l = 1; l < cols; l++) {
      var nin = arch[l - 1];
      for (j = 0; j < arch[l]; j++) {
        for (var i = 0; i < nin; i++) {
          var a = net.pos[l - 1][i], b = net.pos[l][j], index = offset + j * (nin + 1) + i;
          var attrs = { x1: a[0], y1: a[1], x2: b[0], y2: b[1] };
          var line = svgEl("line", attrs, edgeGroup);
          var hit = svgEl("line", Object.assign({ "class": "hit", "data-param": index }, attrs), hitGroup);
          var what = neuronName(l, j) + ".w" + i + " (from " + neuronName(l - 1, i) + " into " + neuronName(l, j) + ")";
          hook(hit, { param: index, label: what, line: line });
          net.edges.push({ line: line, param: index });
        }
      }
      offset += arch[l] * (nin + 1);
    }
    svgEl("text", { x: net.pos[0][0][0], y: 12, "class": "layer" }, nodeGroup).textContent = "inputs";
    offset = 0;
    for (l = 0; l < cols; l++) {
      if (l > 0) svgEl("text", { x: net.pos[l][0][0], y: 12, "class": "layer" }, nodeGroup).textContent = l === cols - 1 ? "output" : "layer " + (l - 1);
      var row = [];
      for (j = 0; j < arch[l]; j++) {
        var p = net.pos[l][j];
        var circle = svgEl("circle", { cx: p[0], cy: p[1], r: p[2], fill: "#fff", "data-neuron": l + ":" + j }, nodeGroup);
        var text = p[2] >= 10 ? svgEl("text", { x: p[0], y: p[1] + 3 }, nodeGroup) : null;
        var bias = l > 0 ? offset + j * (arch[l - 1] + 1) + arch[l - 1] : null;
        hook(circle, { param: bias, label: neuronName(l, j), neuron: [l, j], circle: circle });
        row.push({ circle: circle, text: text });
      }
      if (l > 0) offset += arch[l] * (arch[l - 1] + 1);
      net.neurons.push(row);
    }
  }

  function hook(el, what) {
    el.addEventListener("mouseenter", function () { if (!state.pinned) showInfo(what); });
    el.addEventListener("mouseleave", function () { if (!state.pinned) $("net-info").textContent = ""; });
    el.addEventListener("click", function () {
      var same = state.pinned && state.pinned.label === what.label;
      document.querySelectorAll("#network .pinned").forEach(function (e) { e.classList.remove("pinned"); });
      state.pinned = same ? null : what;
      if (!same) { (what.line || what.circle).classList.add("pinned"); showInfo(what); }
    });
  }

  function activation(l, j) {
    var f = state.frame;
    if (!f) return null;
    if (l === 0) return f.points.xy[f.points.selected][j];
    return f.acts[l - 1][j];
  }

  function showInfo(what) {
    var f = state.frame;
    if (!f) return;
    var text = what.label;
    if (what.neuron) text += ": activation " + fmt(activation(what.neuron[0], what.neuron[1])) + " for the selected point";
    if (what.param !== null && what.param !== undefined) {
      var p = f.params;
      text += (what.neuron ? "; bias " : ": weight ") + fmt(p.data[what.param]) + ", grad " + fmt(p.grad[what.param]) +
        ", last update " + fmt(p.update[what.param], 6);
    }
    $("net-info").textContent = text;
  }

  function drawNetwork(frame) {
    var key = frame.arch.join(",");
    if (key !== state.archKey) { buildNetwork(frame.arch); state.archKey = key; }
    var data = frame.params.data, biggest = 1e-9;
    net.edges.forEach(function (e) { var w = Math.abs(data[e.param] || 0); if (w > biggest) biggest = w; });
    net.edges.forEach(function (e) {
      var w = data[e.param] || 0;
      e.line.setAttribute("stroke", w >= 0 ? "#0877bd" : "#f59322");
      e.line.setAttribute("stroke-width", (0.3 + 3.2 * Math.abs(w) / biggest).toFixed(2));
      e.line.setAttribute("stroke-opacity", (0.25 + 0.75 * Math.abs(w) / biggest).toFixed(2));
    });
    for (var l = 0; l < net.neurons.length; l++) {
      for (var j = 0; j < net.neurons[l].length; j++) {
        var a = activation(l, j), cell = net.neurons[l][j];
        var t = a === null ? 0 : Math.tanh(a), rgb = hexToRgb(COLORS[t >= 0 ? 1 : 0]), s = Math.abs(t) * 0.8;
        cell.circle.setAttribute("fill", "rgb(" + rgb.map(function (c) { return Math.round(255 + (c - 255) * s); }).join(",") + ")");
        if (cell.text) cell.text.textContent = fmt(a, 2);
      }
    }
    if (state.pinned) showInfo(state.pinned);
  }

  // --- the selected point's loss graph ----------------------------------------------------------------

  function loadLayout(frame) {
    var g = frame.graph;
    if (state.layoutLoading || (state.layout && state.layout.id === g.layout) || !g.ready) return;
    state.layoutLoading = true;
    fetch("/api/layout?id=" + g.layout, { headers: HEADERS, cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (layout) {
        state.layoutLoading = false;
        if (layout) { installLayout(layout); if (state.frame) { updateWalk(state.frame); updateGraph(state.frame); } }
      })
      .catch(function () { state.layoutLoading = false; });
  }

  function installLayout(layout) {
    var holder = $("graph");
    holder.innerHTML = "";
    state.layout = layout;
    state.boxes = [];
    if (layout.error) { var p = document.createElement("p"); p.textContent = layout.error; holder.appendChild(p); return; }
    var doc = new DOMParser().parseFromString(layout.svg, "image/svg+xml");
    var svg = document.importNode(doc.documentElement, true);
    var vb = (svg.getAttribute("viewBox") || "0 0 100 100").split(/[\s,]+/).map(Number);
    svg.removeAttribute("width"); svg.removeAttribute("height");
    state.svgSize = [vb[2], vb[3]];
    holder.appendChild(svg);
    var byId = {};
    layout.boxes.forEach(function (box) {
      var g = svg.querySelector('[id="' + box.id + '"]');
      if (!g) return;
      g.setAttribute("data-topo", String(box.topo));
      g.classList.add("live-box");
      var texts = Array.prototype.slice.call(g.querySelectorAll("text"));
      var slots = [];
      box.slots.forEach(function (slot) {
        var el = texts.filter(function (t) { return t.textContent.trim().indexOf(slot[0]) === 0; })[0];
        if (el) slots.push({ el: el, prefix: slot[0], place: slot[1], kind: slot[2] });
      });
      var entry = { id: box.id, g: g, slots: slots };
      var neuron = /^L(\d+)N(\d+)$/.exec(box.id);
      if (neuron) {         // one box per neuron: a click draws that neuron node by node
        g.classList.add("live-expandable");
        g.addEventListener("click", function () {
          send({ action: "expand", layer: parseInt(neuron[1], 10), neuron: parseInt(neuron[2], 10) });
        });
      }
      state.boxes.push(entry);
      byId[box.id] = entry;
    });
    state.boxById = byId;
    applyZoom(state.zoom);
  }

  function applyZoom(zoom) {
    var svg = document.querySelector("#graph svg");
    if (!svg || !state.svgSize) return;
    var holder = $("graph"), fit = Math.min(1.4, (holder.clientWidth - 4) / state.svgSize[0]);
    state.zoom = zoom === null || zoom === undefined ? Math.max(0.7, fit) : Math.max(0.1, Math.min(3, zoom));
    svg.style.width = Math.round(state.svgSize[0] * state.zoom) + "px";
    svg.style.height = Math.round(state.svgSize[1] * state.zoom) + "px";
  }
  $("zoom-in").addEventListener("click", function () { applyZoom((state.zoom || 1) * 1.25); });
  $("zoom-out").addEventListener("click", function () { applyZoom((state.zoom || 1) / 1.25); });
  $("zoom-fit").addEventListener("click", function () {
    var holder = $("graph");
    if (state.svgSize) applyZoom(Math.min((holder.clientWidth - 4) / state.svgSize[0], (holder.clientHeight - 4) / state.svgSize[1]));
  });

  function writeBoxes(data, grad) {
    state.boxes.forEach(function (box) {
      box.slots.forEach(function (slot) {
        var v = slot.kind === "d" ? data[slot.place] : grad[slot.place];
        var text = slot.prefix + fmt(v);
        if (slot.el.textContent !== text) slot.el.textContent = text;
      });
    });
  }

  function updateGraph(frame) {
    var g = frame.graph;
    loadLayout(frame);
    var view = !g.grouped ? "" : g.expanded ? "; neuron L" + g.expanded[0] + ".N" + g.expanded[1] + " node by node" :
      "; one box per neuron (click one to expand it)";
    $("graph-title").textContent = "the loss graph of point #" + frame.points.selected + " (" +
      (frame.points.test[frame.points.selected] ? "test" : "train") + "), loss " + fmt(g.loss) + view;
    $("collapse").hidden = !g.expanded;
    if (!state.layout || state.layout.id !== g.layout || state.walk) return;
    writeBoxes(g.data, g.grad);
  }

  // --- backward, step by step -------------------------------------------------------------------------

  function updateWalk(frame) {
    var w = frame.walk;
    var active = !!w;
    ["walk-next", "walk-next10", "walk-finish", "walk-cancel"].forEach(function (id) { $(id).disabled = !active; });
    $("walk-start").disabled = active;
    if (!w) {
      if (state.walk) { state.walk = null; clearHighlight(); $("walk-counter").textContent = "\u00a0"; }
      return;
    }
    if (!state.walk || state.walk.id !== w.id) { state.walk = w; state.walkPos = 0; }
    showWalk();
  }

  function clearHighlight() {
    document.querySelectorAll("#graph .live-current, #graph .live-changed").forEach(function (e) {
      e.classList.remove("live-current"); e.classList.remove("live-changed");
    });
  }

  function showWalk() {
    var w = state.walk, layout = state.layout;
    if (!w || !layout || !layout.node_box || layout.node_box.length !== w.data.length) return;
    var n = w.data.length, grad = new Array(n).fill(0);
    for (var k = 0; k <= state.walkPos; k++) w.steps[k].changes.forEach(function (c) { grad[c[0]] = c[1]; });
    writeBoxes(w.data, grad);
    clearHighlight();
    var step = w.steps[state.walkPos];
    var current = state.boxById[layout.node_box[step.node]];
    step.changes.forEach(function (c) {
      var box = state.boxById[layout.node_box[c[0]]];
      if (box && box !== current) box.g.classList.add("live-changed");
    });
    if (current) {
      current.g.classList.add("live-current");
      if (current.g.scrollIntoView) current.g.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
    $("walk-counter").textContent = "node " + (state.walkPos + 1) + " of " + w.steps.length;
    $("caption").textContent = step.caption + (state.walkPos === w.steps.length - 1 ?
      "\n\nbackward is done: 'finish the update' takes the optimizer step (with the whole batch's gradient)." : "");
    $("walk-next").disabled = $("walk-next10").disabled = state.walkPos >= w.steps.length - 1;
  }

  function advance(by) {
    if (!state.walk) return;
    state.walkPos = Math.min(state.walk.steps.length - 1, state.walkPos + by);
    showWalk();
  }

  $("collapse").addEventListener("click", function () { send({ action: "expand", layer: null, neuron: null }); });
  $("walk-start").addEventListener("click", function () {
    send({ action: "walk" });
  });
  $("walk-next").addEventListener("click", function () { advance(1); });
  $("walk-next10").addEventListener("click", function () { advance(10); });
  $("walk-finish").addEventListener("click", function () {
    send({ action: "walk_finish" }).then(function (ok) { if (ok) $("caption").textContent = "the update is done: one training step."; });
  });
  $("walk-cancel").addEventListener("click", function () { send({ action: "walk_cancel" }); });

  // --- controls ---------------------------------------------------------------------------------------

  $("play").addEventListener("click", function () {
    send({ action: state.frame && state.frame.running ? "pause" : "play" });
  });
  $("one-step").addEventListener("click", function () { send({ action: "step" }); });
  $("reset").addEventListener("click", function () { send({ action: "reset" }); });

  function setting(id, key, parse) {
    var input = $(id);
    input.addEventListener("change", function () {
      var value = parse ? parse(input.value) : input.value;
      var body = { action: "set" };
      body[key] = value;
      send(body).then(function (ok) {
        input.classList.toggle("bad", !ok);
        if (ok) input.blur();
      });
    });
  }
  function number(text) { var v = Number(text); return text.trim() === "" || isNaN(v) ? text : v; }
  setting("lr", "lr", number);
  setting("batch-size", "batch_size", number);
  setting("speed", "speed", number);
  setting("hidden", "hidden", null);
  setting("activation", "activation", null);
  $("speed").addEventListener("input", function () { $("speed-value").textContent = $("speed").value; });

  poll();
})();
