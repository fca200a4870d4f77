// The orchestra_nb DAG widget (anywidget front end). Plain DOM and SVG, no network, no build step.
//
// Python owns the graph and computes positions (`layout`, from graphviz's dot); this file
// draws nodes and edges from them, colours them by status with CSS generated from the `look`
// data, and sends requests back by setting `selected` and `edit`. Kinds, statuses, their
// labels, colours, marks and shapes all arrive as data (`vocabulary`, `look`): Python
// defines them once.

const SVG_NS = "http://www.w3.org/2000/svg";
const ALL_TABBABLE = 80; // drawings with more nodes use one tab stop and the arrow keys

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) el.setAttribute(key, value);
  }
  for (const child of children) if (child) el.append(child);
  return el;
}

function svgEl(tag, attrs = {}) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  return el;
}

function fmtSeconds(s) {
  if (s === undefined || s === null) return "";
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(2)} s`;
}

function jsonTree(value, key) {
  const label = key === undefined ? "" : `${key}: `;
  if (value === null || typeof value !== "object") {
    return h("div", { class: "onb-json-leaf", text: label + JSON.stringify(value) });
  }
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  const open = Array.isArray(value) ? `[${entries.length}]` : `{${entries.length}}`;
  const details = h("details", { class: "onb-json", open: entries.length <= 20 ? "" : null },
    h("summary", { text: label + open }));
  for (const [k, v] of entries) details.append(jsonTree(v, k));
  return details;
}

function resultView(view) {
  const box = h("div", { class: "onb-result", "data-testid": "result" });
  if (!view) return box;
  if (view.type === "markdown" || view.type === "table") {
    const content = h("div", { class: `onb-${view.type}` });
    content.innerHTML = view.html; // rendered and escaped in Python (mistune, escape=True)
    box.append(content);
  } else if (view.type === "image") {
    box.append(h("img", { src: view.src, alt: "result" }));
  } else if (view.type === "json") {
    box.append(jsonTree(view.data));
  } else if (view.type === "bytes") {
    box.append(h("pre", { text: `${view.size} bytes: ${view.preview}` }));
  } else {
    box.append(h("pre", { text: view.text }));
  }
  if (view.truncated) box.append(h("div", { class: "onb-note", text: "(cut: the result is longer)" }));
  return box;
}

// --- shapes: drawn by shape name (the kind -> shape table is data from Python) -------------
function shapePath(shape, x, y, w, hgt) {
  const r = Math.min(6, hgt / 4);
  const x2 = x + w, y2 = y + hgt;
  if (shape === "note") {
    const f = Math.min(8, hgt / 3);
    return `M${x},${y}H${x2 - f}L${x2},${y + f}V${y2}H${x}Z M${x2 - f},${y}V${y + f}H${x2}`;
  }
  if (shape === "component") {
    const t = 4;
    return `M${x},${y}H${x2}V${y2}H${x}Z M${x - t},${y + 5}h${2 * t}v5h${-2 * t}Z M${x - t},${y2 - 10}h${2 * t}v5h${-2 * t}Z`;
  }
  return `M${x + r},${y}H${x2 - r}Q${x2},${y} ${x2},${y + r}V${y2 - r}Q${x2},${y2} ${x2 - r},${y2}H${x + r}Q${x},${y2} ${x},${y2 - r}V${y + r}Q${x},${y} ${x + r},${y}Z`;
}

// CSS for every status, generated from the look data: hue -> outline, hue mixed into the
// theme's background -> fill, the theme's text colour for labels (readable light and dark).
function statusCss(look) {
  const dash = { dashed: "5 3", dotted: "1.5 2.5", solid: "none", double: "none" };
  const rules = [];
  for (const [name, s] of Object.entries(look.statuses || {})) {
    const sel = `.onb-root [data-status="${name}"]`;
    rules.push(`${sel} { --onb-hue: ${s.color}; --onb-dash: ${dash[s.line] || "none"}; }`);
    if (s.line === "double") rules.push(`${sel} .onb-double { display: inline; }`);
  }
  rules.push(`.onb-root .onb-edge.onb-critical, .onb-root .onb-legend-critical { --onb-critical: ${look.critical}; }`);
  rules.push(`.onb-root .onb-node.onb-stale, .onb-root .onb-legend-stale { --onb-stale: ${look.stale}; }`);
  return rules.join("\n");
}

function render({ model, el }) {
  el.classList.add("onb-root");
  const voc = () => model.get("vocabulary") || {};
  const look = () => model.get("look") || {};
  const statusLabel = (s) => ((voc().statuses || []).find((x) => x.name === s) || { label: s }).label;
  const kindLabel = (k) => ((voc().kinds || []).find((x) => x.name === k) || { label: k }).label;
  const shapeOf = (kind) => (look().kinds || {})[kind] || look().default_shape || "box";

  let pickingDependencyFor = null; // task id waiting for its "depends on" target
  let expanding = null; // task to show once the group being expanded is drawn
  let selectedEdge = null; // [dependency, task]
  let nodeIndex = new Map(); // drawn node id -> <g>
  let order = []; // drawn node ids in reading order (rank by rank, top to bottom)
  let memberOf = new Map(); // task id -> group id it is drawn in
  let drawnKey = ""; // `${version}:${state}` of the layout drawn last
  let editSeq = 0;
  let gone = false; // the kernel behind this widget is gone
  let scale = null; // null: fit; else pixels per point
  let fitScale = 1;
  let found = []; // search matches (task ids)
  let foundAt = -1;

  const style = h("style", { text: statusCss(look()) });

  const send = (request) => {
    if (gone) return;
    editSeq += 1;
    model.set("edit", { ...request, seq: editSeq, at: Date.now() });
    model.save_changes();
  };

  // --- layout of the widget -----------------------------------------------------------
  const title = h("span", { class: "onb-title" });
  const progress = h("span", { class: "onb-progress", "data-testid": "progress", role: "status" });
  const button = (testid, text, onclick, extra = {}) => h("button", { type: "button", "data-testid": testid, text, onclick, ...extra });
  const runBtn = button("run", "▶ Run", () => send({ op: "run" }));
  const cancelBtn = button("cancel", "■ Cancel", () => send({ op: "cancel" }));
  const retryBtn = button("retry-failed", "↻ Retry failed", () => send({ op: "retry" }));
  const addBtn = button("add-task", "+ Task", () => showAddForm());
  const dependBtn = button("depends-on", "Depends on…", () => startPicking(), { title: "Select a task, press this, then click the task it depends on" });
  const removeEdgeBtn = button("remove-dependency", "− Dependency", () => {
    if (selectedEdge) send({ op: "remove_dependency", task: selectedEdge[1], dependency: selectedEdge[0] });
  }, { disabled: true });
  const deleteBtn = button("delete-task", "Delete task", () => deleteSelected());
  const zoomOutBtn = button("zoom-out", "−", () => zoomBy(1 / 1.25), { title: "Zoom out (Ctrl+wheel)", "aria-label": "Zoom out" });
  const zoomFitBtn = button("zoom-fit", "Fit", () => { scale = null; applyZoom(); }, { title: "Fit the whole plan in the panel" });
  const zoomInBtn = button("zoom-in", "+", () => zoomBy(1.25), { title: "Zoom in (Ctrl+wheel)", "aria-label": "Zoom in" });
  const collapseBtn = button("collapse-all", "Collapse groups", () => send({ op: "collapse" }), { hidden: "" });
  const search = h("input", { type: "search", class: "onb-search", "data-testid": "search", placeholder: "Find task…", "aria-label": "Find a task by id or name" });
  const foundNote = h("span", { class: "onb-found-note", "data-testid": "search-count", "aria-live": "polite" });
  const zoomBox = h("span", { class: "onb-zoom" }, zoomOutBtn, zoomFitBtn, zoomInBtn);
  const toolbar = h("div", { class: "onb-toolbar", role: "toolbar", "aria-label": "Plan actions" }, title, runBtn, cancelBtn, retryBtn, addBtn,
    dependBtn, removeEdgeBtn, deleteBtn, zoomBox, collapseBtn, search, foundNote, progress);
  const legend = h("details", { class: "onb-legend", "data-testid": "legend", open: "" }, h("summary", { text: "Legend" }));
  const message = h("div", { class: "onb-message", "data-testid": "message", role: "status", "aria-live": "polite" });
  const graphBox = h("div", { class: "onb-graph", "data-testid": "graph" });
  const minimap = h("canvas", { class: "onb-minimap", "data-testid": "minimap", width: 160, height: 100, hidden: "", "aria-hidden": "true" });
  const graphWrap = h("div", { class: "onb-graph-wrap" }, graphBox, minimap);
  const inspector = h("div", { class: "onb-inspector", "data-testid": "inspector", "aria-live": "polite", "aria-label": "Task inspector", role: "region" });
  const form = h("div", { class: "onb-form" });
  const gantt = h("div", { class: "onb-gantt", "data-testid": "timeline" });
  const side = h("div", { class: "onb-side" }, form, inspector);
  el.append(style, toolbar, legend, message, h("div", { class: "onb-main" }, graphWrap, side), gantt);

  function say(level, text) {
    message.className = `onb-message onb-${level}`;
    message.textContent = text || "";
  }

  // --- legend: every status, kind and mark, from the data ---------------------------------
  function drawLegend() {
    legend.replaceChildren(h("summary", { text: "Legend" }));
    const row = h("div", { class: "onb-legend-row" });
    for (const s of voc().statuses || []) {
      const mark = ((look().statuses || {})[s.name] || {}).mark || "";
      const sw = svgEl("svg", { width: 34, height: 16, "aria-hidden": "true" });
      sw.append(svgEl("path", { class: "onb-shape", d: shapePath("box", 1, 1, 32, 14) }));
      sw.append(svgEl("path", { class: "onb-shape onb-double", d: shapePath("box", 3.5, 3.5, 27, 9) }));
      const t = svgEl("text", { x: 17, y: 12, "text-anchor": "middle", class: "onb-label" });
      t.textContent = mark;
      sw.append(t);
      row.append(h("span", { class: "onb-legend-item", "data-status": s.name, title: s.description }, sw, h("span", { text: s.label })));
    }
    row.append(h("span", { class: "onb-legend-sep" }));
    for (const k of voc().kinds || []) {
      const sw = svgEl("svg", { width: 34, height: 16, "aria-hidden": "true" });
      sw.append(svgEl("path", { class: "onb-shape", d: shapePath(shapeOf(k.name), 5, 1, 27, 14) }));
      row.append(h("span", { class: "onb-legend-item onb-legend-kind", "data-status": "pending", title: k.description }, sw, h("span", { text: k.label })));
    }
    const crit = svgEl("svg", { width: 30, height: 16, "aria-hidden": "true", class: "onb-legend-critical" });
    crit.append(svgEl("path", { class: "onb-edge onb-critical", d: "M2,8H28" }));
    row.append(h("span", { class: "onb-legend-item" }, crit, h("span", { text: "critical path" })));
    const stack = svgEl("svg", { width: 38, height: 18, "aria-hidden": "true" });
    stack.append(svgEl("path", { class: "onb-stack", d: shapePath("box", 6, 1, 30, 12) }));
    stack.append(svgEl("path", { class: "onb-shape", d: shapePath("box", 2, 5, 30, 12) }));
    row.append(h("span", { class: "onb-legend-item", "data-status": "pending" }, stack, h("span", { text: "group ×N (double-click or Enter to open)" })));
    const stale = svgEl("svg", { width: 34, height: 16, "aria-hidden": "true", class: "onb-legend-stale" });
    stale.append(svgEl("path", { class: "onb-shape onb-stale-line", d: shapePath("box", 1, 1, 32, 14) }));
    row.append(h("span", { class: "onb-legend-item", "data-status": "pending" }, stale, h("span", { text: "stale (edited since the run)" })));
    legend.append(row);
  }

  // --- drawing ----------------------------------------------------------------------------
  function drawLayout() {
    const started = performance.now();
    const layout = model.get("layout") || {};
    const nodes = layout.nodes || [];
    el.classList.toggle("onb-laying-out", layout.state === "pending");
    if (layout.state === "error" && !nodes.length) {
      graphBox.replaceChildren(h("div", { class: "onb-placeholder onb-error", text: `Cannot draw the plan: ${layout.error}` }));
      return;
    }
    if (!nodes.length) {
      const text = layout.state === "pending" ? `Laying out ${layout.summary || "the plan"}…` : "No plan yet.";
      graphBox.replaceChildren(h("div", { class: "onb-placeholder", "data-testid": "placeholder", text }));
      return;
    }
    // While a new layout is pending, `nodes` are still the previous ones: keep what is drawn
    // (dimmed) and redraw once the new positions are ready.
    const drawn = graphBox.querySelector("svg.onb-plan");
    const key = `${layout.version}:${layout.state}`;
    if (drawn && (key === drawnKey || layout.state === "pending")) return;
    drawnKey = key;
    memberOf = new Map();
    for (const [gid, members] of Object.entries(layout.groups || {})) for (const m of members) memberOf.set(m, gid);
    const svg = svgEl("svg", {
      class: "onb-plan", viewBox: `-6 -6 ${layout.width + 12} ${layout.height + 12}`,
      role: "group", "aria-label": `Plan: ${layout.summary || ""}. Arrow keys move between tasks, Enter opens one.`,
    });
    svg.dataset.width = layout.width + 12;
    svg.dataset.height = layout.height + 12;
    const defs = svgEl("defs");
    for (const [id, cls] of [["onb-arrow", "onb-arrowhead"], ["onb-arrow-critical", "onb-arrowhead onb-critical"]]) {
      const marker = svgEl("marker", { id: `${id}-${model.cid || ""}`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse", markerUnits: "userSpaceOnUse" });
      marker.append(svgEl("path", { d: "M0,0L10,5L0,10z", class: cls }));
      defs.append(marker);
    }
    svg.append(defs);
    const edgeLayer = svgEl("g", { class: "onb-edges", "aria-hidden": "true" });
    for (const [from, to, d, count, critical] of layout.edges || []) {
      const path = svgEl("path", {
        d, class: `onb-edge${critical ? " onb-critical" : ""}`, "data-from": from, "data-to": to,
        "marker-end": `url(#${critical ? "onb-arrow-critical" : "onb-arrow"}-${model.cid || ""})`,
      });
      if (count > 1) path.style.strokeWidth = String(Math.min(4, 1 + Math.log10(count)));
      const hit = svgEl("path", { d, class: "onb-edge-hit", "data-from": from, "data-to": to });
      const tip = svgEl("title");
      tip.textContent = count > 1 ? `${count.toLocaleString()} dependencies` : `${to} depends on ${from}`;
      hit.append(tip);
      edgeLayer.append(path, hit);
      hit.addEventListener("click", (event) => { event.stopPropagation(); clickEdge(hit, path, [from, to], count); });
    }
    const nodeLayer = svgEl("g", { class: "onb-nodes" });
    nodeIndex = new Map();
    order = [];
    const tabAll = nodes.length <= ALL_TABBABLE;
    for (const [id, x, y, w, hh, label, kind, count, critical] of nodes) {
      // data-lm-suppress-shortcuts: the keys pressed on a focused node are the widget's.
      // Notebook 7 handles keys before the page does (Lumino's capture-phase listener), and
      // its command-mode bindings match any focused element in a cell, so without it
      // ArrowDown on a node selects the next cell and takes the focus away.
      const g = svgEl("g", {
        class: `onb-node${count > 1 ? " onb-group" : ""}${critical ? " onb-critical" : ""}`,
        "data-task": id, "data-kind": kind, role: "button", tabindex: tabAll ? "0" : "-1",
        "data-lm-suppress-shortcuts": "true",
      });
      const x0 = x - w / 2, y0 = y - hh / 2;
      if (count > 1) g.append(svgEl("path", { class: "onb-stack", d: shapePath(shapeOf(kind), x0 + 4, y0 - 4, w, hh) }));
      g.append(svgEl("path", { class: "onb-shape", d: shapePath(shapeOf(kind), x0, y0, w, hh) }));
      g.append(svgEl("path", { class: "onb-shape onb-double", d: shapePath("box", x0 + 2.5, y0 + 2.5, w - 5, hh - 5) }));
      g.append(svgEl("rect", { class: "onb-ring", x: x0 - 4, y: y0 - 4, width: w + 8, height: hh + 8, rx: 7 }));
      const lines = String(label).split("\n");
      const text = svgEl("text", { class: "onb-label", x, y: y - (lines.length - 1) * 6.5 + 4, "text-anchor": "middle" });
      lines.forEach((line, i) => {
        const span = svgEl("tspan", { x, dy: i ? 13 : 0, class: i ? "onb-minutes" : "" });
        if (i === 0) {
          const mark = svgEl("tspan", { class: "onb-mark", "aria-hidden": "true" });
          span.append(mark, document.createTextNode(line));
        } else span.textContent = line;
        text.append(span);
      });
      g.append(text);
      const tip = svgEl("title");
      tip.textContent = count > 1 ? `${label}: ${count.toLocaleString()} related tasks` : id;
      g.append(tip);
      g.addEventListener("click", (event) => { event.stopPropagation(); clickNode(id); });
      g.addEventListener("dblclick", (event) => { event.stopPropagation(); if (count > 1) expand(id); });
      g.addEventListener("keydown", (event) => nodeKey(event, id, count > 1));
      nodeLayer.append(g);
      nodeIndex.set(id, g);
      order.push(id);
    }
    if (!tabAll && order.length) nodeIndex.get(order[0]).setAttribute("tabindex", "0");
    svg.append(edgeLayer, nodeLayer);
    graphBox.replaceChildren(svg);
    collapseBtn.hidden = !(layout.expanded || []).length;
    recolourNow();
    highlight();
    applyZoom();
    if (expanding && nodeIndex.has(expanding)) { centreOn(expanding); expanding = null; }
    el.dataset.drawMs = (performance.now() - started).toFixed(2);
    requestAnimationFrame(() => { el.dataset.fullPicture = String(Date.now()); el.dataset.phase = "drawn"; });
  }

  function recolour() {
    const started = performance.now();
    recolourNow();
    el.dataset.recolourMs = (performance.now() - started).toFixed(2);
  }

  function recolourNow() {
    const statuses = model.get("statuses") || {};
    const stale = new Set(model.get("stale") || []);
    const marks = look().statuses || {};
    const tasks = new Map((model.get("tasks") || []).map((t) => [t.id, t]));
    for (const [id, g] of nodeIndex) {
      const status = statuses[id] || "pending";
      if (g.dataset.status !== status) {
        g.dataset.status = status;
        const mark = g.querySelector(".onb-mark");
        const m = (marks[status] || {}).mark || "";
        if (mark) mark.textContent = m ? `${m} ` : "";
      }
      g.classList.toggle("onb-stale", stale.has(id));
      const task = tasks.get(id);
      const isGroup = g.classList.contains("onb-group");
      const name = isGroup ? g.querySelector("title").textContent : (task ? task.name : id);
      const kind = kindLabel(g.dataset.kind);
      g.setAttribute("aria-label", `${name}, ${statusLabel(status)}, ${isGroup ? `group of ${kind} tasks` : `${kind} task`}`
        + `${stale.has(id) ? ", stale" : ""}${g.classList.contains("onb-critical") ? ", on the critical path" : ""}`);
    }
  }

  function highlight() {
    const selected = model.get("selected");
    const drawnAs = memberOf.get(selected) || selected;
    for (const [id, g] of nodeIndex) {
      const on = id === drawnAs;
      g.classList.toggle("onb-selected", on);
      g.setAttribute("aria-pressed", on ? "true" : "false");
    }
    if (nodeIndex.size > ALL_TABBABLE && nodeIndex.has(drawnAs)) rove(drawnAs, false);
  }

  // --- zoom, fit, pan, minimap ---------------------------------------------------------------
  function applyZoom() {
    const svg = graphBox.querySelector("svg.onb-plan");
    if (!svg) return;
    const w = parseFloat(svg.dataset.width), hh = parseFloat(svg.dataset.height);
    const room = Math.max(200, graphBox.clientWidth - 4 || el.clientWidth - 360);
    fitScale = Math.min(room / w, 520 / hh, 1.4);
    const s = scale === null ? fitScale : scale;
    svg.setAttribute("width", (w * s).toFixed(1));
    svg.setAttribute("height", (hh * s).toFixed(1));
    graphBox.style.height = `${Math.max(110, Math.min(hh * fitScale, 520) + 6)}px`;
    el.dataset.zoom = s.toFixed(4);
    drawMinimap();
  }

  function zoomBy(factor, cx, cy) {
    const svg = graphBox.querySelector("svg.onb-plan");
    if (!svg) return;
    const now = scale === null ? fitScale : scale;
    const next = Math.min(4, Math.max(fitScale * 0.5, now * factor));
    const px = cx ?? graphBox.clientWidth / 2, py = cy ?? graphBox.clientHeight / 2;
    const ux = (graphBox.scrollLeft + px) / now, uy = (graphBox.scrollTop + py) / now;
    scale = next;
    applyZoom();
    graphBox.scrollLeft = ux * next - px;
    graphBox.scrollTop = uy * next - py;
    drawMinimap();
  }

  function centreOn(id) {
    const g = nodeIndex.get(id);
    const svg = graphBox.querySelector("svg.onb-plan");
    if (!g || !svg) return;
    const s = scale === null ? fitScale : scale;
    if (s < 0.6 && scale === null && (nodeIndex.size > 30)) { scale = 1; applyZoom(); }
    const now = scale === null ? fitScale : scale;
    const box = g.getBBox();
    graphBox.scrollLeft = (box.x + 6 + box.width / 2) * now - graphBox.clientWidth / 2;
    graphBox.scrollTop = (box.y + 6 + box.height / 2) * now - graphBox.clientHeight / 2;
    drawMinimap();
  }

  function drawMinimap() {
    const svg = graphBox.querySelector("svg.onb-plan");
    const layout = model.get("layout") || {};
    const overflow = svg && (graphBox.scrollWidth > graphBox.clientWidth + 2 || graphBox.scrollHeight > graphBox.clientHeight + 2);
    minimap.hidden = !overflow;
    if (!overflow) return;
    const w = parseFloat(svg.dataset.width), hh = parseFloat(svg.dataset.height);
    const k = Math.min(minimap.width / w, minimap.height / hh);
    const ctx = minimap.getContext("2d");
    const css = getComputedStyle(el);
    ctx.clearRect(0, 0, minimap.width, minimap.height);
    ctx.fillStyle = css.getPropertyValue("--onb-muted").trim() || "#888";
    for (const [, x, y, nw, nh] of layout.nodes || []) ctx.fillRect((x - nw / 2 + 6) * k, (y - nh / 2 + 6) * k, Math.max(1, nw * k), Math.max(1, nh * k));
    const s = scale === null ? fitScale : scale;
    ctx.strokeStyle = css.getPropertyValue("--onb-accent").trim() || "#1976d2";
    ctx.lineWidth = 2;
    ctx.strokeRect(graphBox.scrollLeft / s * k, graphBox.scrollTop / s * k, graphBox.clientWidth / s * k, graphBox.clientHeight / s * k);
  }

  minimap.addEventListener("click", (event) => {
    const svg = graphBox.querySelector("svg.onb-plan");
    if (!svg) return;
    const w = parseFloat(svg.dataset.width), hh = parseFloat(svg.dataset.height);
    const k = Math.min(minimap.width / w, minimap.height / hh);
    const s = scale === null ? fitScale : scale;
    const rect = minimap.getBoundingClientRect();
    graphBox.scrollLeft = ((event.clientX - rect.left) / k) * s - graphBox.clientWidth / 2;
    graphBox.scrollTop = ((event.clientY - rect.top) / k) * s - graphBox.clientHeight / 2;
    drawMinimap();
  });
  graphBox.addEventListener("scroll", () => drawMinimap(), { passive: true });
  graphBox.addEventListener("wheel", (event) => {
    if (!event.ctrlKey) return; // plain wheel scrolls
    event.preventDefault();
    const rect = graphBox.getBoundingClientRect();
    zoomBy(event.deltaY < 0 ? 1.1 : 1 / 1.1, event.clientX - rect.left, event.clientY - rect.top);
  }, { passive: false });

  // --- selection, keyboard ---------------------------------------------------------------------
  function clickNode(id) {
    if (gone) return;
    if (pickingDependencyFor) {
      const task = pickingDependencyFor;
      stopPicking();
      if (memberOf.has(id) || (model.get("layout").groups || {})[id]) {
        say("error", "A group stands for many tasks: expand it and pick one task");
        return;
      }
      if (id !== task) send({ op: "add_dependency", task, dependency: id });
      return;
    }
    clearEdge();
    model.set("selected", id);
    model.save_changes();
  }

  function rove(id, focus = true) {
    for (const g of nodeIndex.values()) if (g.getAttribute("tabindex") === "0") g.setAttribute("tabindex", "-1");
    const g = nodeIndex.get(id);
    if (!g) return;
    g.setAttribute("tabindex", "0");
    if (focus) { g.focus(); if (scale !== null || fitScale < 0.6) centreIfHidden(g); }
  }

  function centreIfHidden(g) {
    const a = g.getBoundingClientRect(), b = graphBox.getBoundingClientRect();
    if (a.left < b.left || a.right > b.right || a.top < b.top || a.bottom > b.bottom) centreOn(g.dataset.task);
  }

  function nodeKey(event, id, isGroup) {
    const at = order.indexOf(id);
    let next = null;
    if (event.key === "ArrowDown" || event.key === "ArrowRight") next = order[Math.min(order.length - 1, at + 1)];
    else if (event.key === "ArrowUp" || event.key === "ArrowLeft") next = order[Math.max(0, at - 1)];
    else if (event.key === "Home") next = order[0];
    else if (event.key === "End") next = order[order.length - 1];
    if (next !== null) {
      event.preventDefault();
      if (nodeIndex.size > ALL_TABBABLE) rove(next); else nodeIndex.get(next).focus();
      return;
    }
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      if (isGroup && event.key === "Enter" && model.get("selected") === id) expand(id);
      else clickNode(id);
    } else if (event.key === "Delete" || event.key === "Backspace") {
      event.preventDefault();
      if (!isGroup) { model.set("selected", id); model.save_changes(); deleteSelected(); }
    }
  }

  el.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    if (pickingDependencyFor) { stopPicking(); say("info", ""); event.stopPropagation(); return; }
    if (event.target.closest && event.target.closest(".onb-node") && model.get("selected")) {
      model.set("selected", "");
      model.save_changes();
      event.stopPropagation();
    }
  });

  // Expanding a group can add hundreds of nodes: once they are drawn, show the group's
  // place at a readable size (centred on `task`, or on its first member) rather than a fit
  // of the whole, much bigger, drawing.
  function expand(group, task) {
    const members = (model.get("layout").groups || {})[group] || [];
    expanding = task || members[0] || null;
    send({ op: "expand", group });
  }

  function startPicking() {
    const tid = model.get("selected");
    if (!tid || (model.get("layout").groups || {})[tid]) { say("info", "Select a task first, then press “Depends on…”"); return; }
    pickingDependencyFor = tid;
    graphBox.classList.add("onb-picking");
    say("info", `Click (or focus and press Enter on) the task that “${tid}” should depend on (Esc to stop)`);
  }

  function stopPicking() {
    pickingDependencyFor = null;
    graphBox.classList.remove("onb-picking");
  }

  function deleteSelected() {
    const tid = model.get("selected");
    if (!tid) { say("info", "Select a task first, then press “Delete task”"); return; }
    if ((model.get("layout").groups || {})[tid]) { say("error", "A group cannot be deleted as one: expand it first"); return; }
    send({ op: "remove_task", task: tid });
  }

  function clearEdge() {
    selectedEdge = null;
    removeEdgeBtn.disabled = true;
    for (const p of graphBox.querySelectorAll(".onb-edge.onb-selected")) p.classList.remove("onb-selected");
  }

  function clickEdge(hit, path, pair, count) {
    if (gone) return;
    clearEdge();
    path.classList.add("onb-selected");
    if (count > 1) { say("info", `${count.toLocaleString()} dependencies between two groups`); return; }
    selectedEdge = pair;
    removeEdgeBtn.disabled = false;
    say("info", `Selected: “${pair[1]}” depends on “${pair[0]}”. Press “− Dependency” to remove it.`);
  }

  graphBox.addEventListener("click", () => clearEdge());

  // --- search ----------------------------------------------------------------------------------
  function runSearch() {
    const q = search.value.trim().toLowerCase();
    for (const g of graphBox.querySelectorAll(".onb-node.onb-found")) g.classList.remove("onb-found");
    found = [];
    foundAt = -1;
    if (!q) { foundNote.textContent = ""; return; }
    for (const t of model.get("tasks") || []) {
      if (t.id.toLowerCase().includes(q) || t.name.toLowerCase().includes(q)) found.push(t.id);
    }
    foundNote.textContent = found.length ? `${found.length.toLocaleString()} found · Enter for next` : "none found";
    for (const id of found.slice(0, 2000)) {
      const g = nodeIndex.get(memberOf.get(id) || id);
      if (g) g.classList.add("onb-found");
    }
  }

  function nextFound() {
    if (!found.length) return;
    foundAt = (foundAt + 1) % found.length;
    const id = found[foundAt];
    const drawn = memberOf.get(id) || id;
    model.set("selected", id);
    model.save_changes();
    centreOn(drawn);
    foundNote.textContent = `${foundAt + 1} of ${found.length.toLocaleString()}` + (drawn !== id ? " (inside a group)" : "");
  }

  search.addEventListener("input", runSearch);
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); nextFound(); }
    if (event.key === "Escape") { search.value = ""; runSearch(); }
  });

  // --- inspector and forms ---------------------------------------------------------------------
  function badge(status, extra = "") {
    const mark = ((look().statuses || {})[status] || {}).mark || "";
    return h("span", { class: "onb-badge", "data-status": status, "data-testid": "inspector-status", text: `${mark ? `${mark} ` : ""}${statusLabel(status)}${extra}` });
  }

  function drawInspector() {
    const info = model.get("inspector") || {};
    inspector.replaceChildren();
    form.replaceChildren();
    side.classList.toggle("onb-idle", !info.id); // a narrow hint: the plan gets the room
    if (!info.id) {
      inspector.append(h("div", { class: "onb-note", text: "Click a task (or Tab to it and press Enter) to see it here." }));
      return;
    }
    if (info.group === true) { drawGroup(info); return; }
    const rows = [
      ["status", badge(info.status, info.stale ? " (stale: edited since the last run)" : "")],
      ["kind", kindLabel(info.kind) + (info.function ? ` · ${info.function}()` : "")],
      ["depends on", names(info.dependencies)],
      ["needed by", names(info.dependents)],
    ];
    if (info.arguments) rows.push(["arguments", h("pre", { class: "onb-arguments", "data-testid": "inspector-arguments", text: info.arguments })]);
    if (info.attempts) rows.push(["attempts", String(info.attempts)]);
    if (info.seconds !== undefined) rows.push(["ran", `${fmtSeconds(info.seconds)} (from ${fmtSeconds(info.started)})`]);
    if (info.tokens) rows.push(["tokens", info.tokens.toLocaleString()]);
    const table = h("table", { class: "onb-facts" });
    for (const [k, v] of rows) table.append(h("tr", {}, h("th", { text: k }), h("td", {}, typeof v === "string" ? document.createTextNode(v) : v)));
    inspector.append(
      h("div", { class: "onb-inspector-title", "data-testid": "inspector-title", text: info.name }),
      h("div", { class: "onb-id", text: info.id }),
      h("div", { class: "onb-description", "data-testid": "inspector-description", text: info.description || "" }),
      table,
    );
    if (info.in_group) inspector.append(h("div", { class: "onb-note" }, `Drawn inside a group of ${info.in_group.count.toLocaleString()} related tasks. `,
      button("expand-group", "Expand group", () => expand(info.in_group.id, info.id))));
    if (info.arguments) inspector.append(h("div", { class: "onb-sub", text: "arguments" }), resultView(info.arguments));
    if (info.error) {
      inspector.append(h("div", { class: "onb-error", "data-testid": "inspector-error", text: info.error }));
      inspector.append(button("retry-task", "↻ Retry", () => send({ op: "retry", task: info.id }), { disabled: gone || !(model.get("can") || {}).retry ? "" : null }));
    }
    if (info.result) inspector.append(resultView(info.result));
    showEditForm(info);
  }

  function names(list) {
    const all = (list || []).map((d) => d.name);
    if (!all.length) return "—";
    return all.slice(0, 12).join(", ") + (all.length > 12 ? ` … and ${(all.length - 12).toLocaleString()} more` : "");
  }

  function drawGroup(info) {
    const counts = Object.entries(info.counts || {}).map(([s, n]) => `${n.toLocaleString()} ${statusLabel(s)}`).join(", ");
    const list = h("ul", { class: "onb-members" });
    for (const m of info.members || []) {
      list.append(h("li", {}, h("button", { type: "button", class: "onb-link", "data-status": m.status, text: m.name, onclick: () => { model.set("selected", m.id); model.save_changes(); } })));
    }
    inspector.append(
      h("div", { class: "onb-inspector-title", "data-testid": "inspector-title", text: info.name }),
      h("div", { class: "onb-id", text: `${info.count.toLocaleString()} related ${kindLabel(info.kind)} tasks drawn as one node` }),
      h("table", { class: "onb-facts" }, h("tr", {}, h("th", { text: "status" }), h("td", {}, badge(info.status))), h("tr", {}, h("th", { text: "tasks" }), h("td", { text: counts }))),
      button("expand-group", `Expand (${info.count.toLocaleString()} nodes)`, () => expand(info.id), { disabled: gone ? "" : null }),
      list,
    );
    if (info.count > (info.members || []).length) inspector.append(h("div", { class: "onb-note", text: `… and ${(info.count - info.members.length).toLocaleString()} more (search finds any of them)` }));
  }

  function field(label, input) {
    return h("label", { class: "onb-field" }, h("span", { text: label }), input);
  }

  function kindSelect(value) {
    const select = h("select", { "data-testid": "edit-kind" });
    for (const k of voc().kinds || []) select.append(h("option", { value: k.name, text: k.label, selected: k.name === value ? "" : null }));
    return select;
  }

  function showEditForm(info) {
    const name = h("input", { "data-testid": "edit-name", value: info.name });
    const description = h("textarea", { "data-testid": "edit-description", rows: 3 });
    description.value = info.description || "";
    const kind = kindSelect(info.kind);
    form.append(h("details", { class: "onb-edit" }, h("summary", { text: "Edit task" }),
      field("name", name), field("description", description), field("kind", kind),
      button("save-task", "Save", () => send({ op: "update_task", task: info.id, name: name.value, description: description.value, kind: kind.value }))));
  }

  function showAddForm() {
    form.replaceChildren();
    side.classList.remove("onb-idle");
    const name = h("input", { "data-testid": "new-name", placeholder: "name" });
    const description = h("textarea", { "data-testid": "new-description", rows: 3, placeholder: "what to do" });
    const kind = kindSelect(voc().default_kind);
    const selected = model.get("selected");
    const usable = selected && !(model.get("layout").groups || {})[selected];
    const dep = h("input", { type: "checkbox", "data-testid": "new-after-selected", checked: usable ? "" : null });
    form.append(h("div", { class: "onb-edit" }, h("strong", { text: "New task" }),
      field("name", name), field("description", description), field("kind", kind),
      usable ? field(`after “${selected}”`, dep) : null,
      button("create-task", "Add", () => send({ op: "add_task", name: name.value, description: description.value, kind: kind.value, dependencies: usable && dep.checked ? [selected] : [] })),
      button("cancel-add", "Cancel", () => drawInspector())));
    name.focus();
  }

  // --- progress, buttons, timeline ----------------------------------------------------------------
  function drawProgress() {
    const p = model.get("progress") || {};
    const busy = model.get("busy");
    const can = model.get("can") || {};
    progress.textContent = busy === "planning" ? "planning…" : (p.text || "");
    el.classList.toggle("onb-busy", !!busy);
    runBtn.disabled = gone || !can.run;
    cancelBtn.disabled = gone || !can.cancel;
    retryBtn.disabled = gone || !can.retry;
    for (const b of [addBtn, dependBtn, deleteBtn]) b.disabled = gone || !can.edit;
    if (gone) removeEdgeBtn.disabled = true;
  }

  function drawGantt() {
    const all = model.get("timeline") || [];
    gantt.replaceChildren();
    if (!all.length) return;
    const rows = all.slice(0, 300);
    const names = new Map((model.get("tasks") || []).map((t) => [t.id, t.name]));
    const end = Math.max(...all.map((r) => r.end), 1e-6);
    const rowH = rows.length > 60 ? 4 : 14;
    const width = 640;
    const label = rowH > 6 ? 160 : 0;
    const svg = svgEl("svg", { width: width + label, height: rows.length * rowH + 18, class: "onb-gantt-svg" });
    rows.forEach((r, i) => {
      const y = i * rowH;
      if (label) {
        const t = svgEl("text", { x: 0, y: y + rowH - 3, class: "onb-gantt-label" });
        t.textContent = names.get(r.id) || r.id;
        svg.append(t);
      }
      const bar = svgEl("rect", {
        x: label + (r.start / end) * width, y: y + 1,
        width: Math.max(1, ((r.end - r.start) / end) * width), height: rowH - 2,
        class: "onb-bar", "data-status": r.status,
      });
      const tip = svgEl("title");
      tip.textContent = `${names.get(r.id) || r.id}: ${fmtSeconds(r.start)} → ${fmtSeconds(r.end)} (${statusLabel(r.status)})`;
      bar.append(tip);
      svg.append(bar);
    });
    const axis = svgEl("text", { x: label, y: rows.length * rowH + 14, class: "onb-gantt-label" });
    axis.textContent = `0 → ${fmtSeconds(end)}` + (all.length > rows.length ? ` (first ${rows.length} of ${all.length.toLocaleString()} tasks)` : "");
    svg.append(axis);
    gantt.append(h("div", { class: "onb-gantt-title", text: "Timeline" }), svg);
  }

  function drawMessage() {
    if (gone) return;
    const m = model.get("message") || {};
    say(m.level || "info", m.text || "");
  }

  // --- a widget whose kernel is gone says so --------------------------------------------------
  // The widget manager marks models disconnected when their kernel restarts or dies
  // (`comm_live_update`); a ping that gets its pong back proves the kernel is still there.
  function checkAlive(disconnected) {
    if (disconnected === gone) return;
    gone = disconnected;
    el.classList.toggle("onb-gone", gone);
    for (const input of el.querySelectorAll("button, input, select, textarea")) if (gone) input.disabled = true;
    if (gone) {
      stopPicking();
      say("error", "The kernel behind this widget is gone (restarted or shut down): buttons do nothing now. Run the cell again for a live widget.");
    } else {
      search.disabled = false;
      drawMessage();
    }
    drawProgress();
  }

  title.textContent = model.get("title") || "";
  drawLegend();
  drawLayout();
  drawInspector();
  drawProgress();
  drawGantt();
  drawMessage();
  // timing hooks for bench/widget.py: the first frame with the widget (placeholder or plan)
  requestAnimationFrame(() => { el.dataset.firstPicture = String(Date.now()); });
  const resize = new ResizeObserver(() => { if (scale === null) applyZoom(); });
  resize.observe(graphBox);
  const alive = () => {
    setTimeout(() => checkAlive(true), 0);
    try { model.send({ type: "ping" }); } catch (e) { /* no comm: gone it is */ }
  };
  const onCustom = (msg) => { if (msg && msg.type === "pong") checkAlive(false); };

  const handlers = [
    ["change:layout", drawLayout],
    ["change:tasks", () => { if (search.value) runSearch(); }],
    ["change:statuses", recolour],
    ["change:stale", recolour],
    ["change:selected", highlight],
    ["change:inspector", drawInspector],
    ["change:progress", drawProgress],
    ["change:busy", drawProgress],
    ["change:can", () => { drawProgress(); drawInspector(); }],
    ["change:timeline", drawGantt],
    ["change:message", drawMessage],
    ["change:look", () => { style.textContent = statusCss(look()); drawLegend(); }],
    ["change:title", () => { title.textContent = model.get("title") || ""; }],
    ["comm_live_update", alive],
    ["msg:custom", onCustom],
  ];
  for (const [name, fn] of handlers) model.on(name, fn);
  requestAnimationFrame(() => { if (el.closest(".jupyter-widgets-disconnected")) checkAlive(true); });
  return () => {
    resize.disconnect();
    for (const [name, fn] of handlers) model.off(name, fn);
  };
}

export default { render };
