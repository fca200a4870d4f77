// The orchestra_nb DAG widget (anywidget front end). Plain DOM and SVG, no network, no build step.
//
// Python owns the graph; this file draws what the synced traits say and sends requests back
// by setting `selected` and `edit`. The SVG from graphviz is inserted once per layout; status
// changes only toggle CSS classes on the node elements found once per SVG.

// Task kinds and statuses arrive as data (the `vocabulary` trait): Python defines them once.
const names = (model, what) => (model.get("vocabulary")[what] || []).map((x) => x.name);

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
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
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

function render({ model, el }) {
  el.classList.add("onb-root");
  let pickingDependencyFor = null; // task id waiting for "depends on" target
  let selectedEdge = null; // [dependency, task]
  let nodeIndex = new Map(); // task id -> <g>
  let edgeIndex = new Map(); // element id -> [dependency, task]
  let editSeq = 0;

  const send = (request) => {
    editSeq += 1;
    model.set("edit", { ...request, seq: editSeq, at: Date.now() });
    model.save_changes();
  };

  // --- layout ---------------------------------------------------------------------------
  const title = h("span", { class: "onb-title" });
  const progress = h("span", { class: "onb-progress", "data-testid": "progress" });
  const runBtn = h("button", { "data-testid": "run", text: "▶ Run", onclick: () => send({ op: "run" }) });
  const cancelBtn = h("button", { "data-testid": "cancel", text: "■ Cancel", onclick: () => send({ op: "cancel" }) });
  const retryBtn = h("button", { "data-testid": "retry-failed", text: "↻ Retry failed", onclick: () => send({ op: "retry" }) });
  const addBtn = h("button", { "data-testid": "add-task", text: "+ Task", onclick: () => showAddForm() });
  const dependBtn = h("button", {
    "data-testid": "depends-on", text: "Depends on…", title: "Select a task, press this, then click the task it depends on",
    onclick: () => {
      const tid = model.get("selected");
      if (!tid) { say("info", "Select a task first, then press “Depends on…”"); return; }
      pickingDependencyFor = tid;
      graphBox.classList.add("onb-picking");
      say("info", `Click the task that “${tid}” should depend on (Esc to stop)`);
    },
  });
  const removeEdgeBtn = h("button", {
    "data-testid": "remove-dependency", text: "− Dependency", disabled: true,
    onclick: () => { if (selectedEdge) send({ op: "remove_dependency", task: selectedEdge[1], dependency: selectedEdge[0] }); },
  });
  const deleteBtn = h("button", {
    "data-testid": "delete-task", text: "Delete task",
    onclick: () => { const tid = model.get("selected"); if (tid) send({ op: "remove_task", task: tid }); },
  });
  const zoomOutBtn = h("button", { "data-testid": "zoom-out", text: "−", title: "Zoom out (Ctrl+wheel)", onclick: () => zoomBy(1 / 1.25) });
  const zoomFitBtn = h("button", { "data-testid": "zoom-fit", text: "Fit", title: "Fit the plan to the panel", onclick: () => { zoom = null; applyZoom(); } });
  const zoomInBtn = h("button", { "data-testid": "zoom-in", text: "+", title: "Zoom in (Ctrl+wheel)", onclick: () => zoomBy(1.25) });
  const zoomBox = h("span", { class: "onb-zoom" }, zoomOutBtn, zoomFitBtn, zoomInBtn);
  const toolbar = h("div", { class: "onb-toolbar" }, title, runBtn, cancelBtn, retryBtn, addBtn,
    dependBtn, removeEdgeBtn, deleteBtn, zoomBox, progress);
  const message = h("div", { class: "onb-message", "data-testid": "message" });
  const graphBox = h("div", { class: "onb-graph", "data-testid": "graph" });
  const inspector = h("div", { class: "onb-inspector", "data-testid": "inspector" });
  const form = h("div", { class: "onb-form" });
  const gantt = h("div", { class: "onb-gantt", "data-testid": "timeline" });
  el.append(toolbar, message, h("div", { class: "onb-main" }, graphBox, h("div", { class: "onb-side" }, form, inspector)), gantt);

  function say(level, text) {
    message.className = `onb-message onb-${level}`;
    message.textContent = text || "";
  }

  // --- graph ------------------------------------------------------------------------------
  // how long the last layout insertion and the last recolouring took (read by bench/widget.py)
  function timed(name, fn) {
    const started = performance.now();
    fn();
    el.dataset[name] = (performance.now() - started).toFixed(2);
  }

  function drawSvg() { timed("drawMs", drawSvgNow); }

  function recolour() { timed("recolourMs", recolourNow); }

  // Zoom: null fits a wide plan to the panel while its labels stay readable (past
  // that, natural size and scroll); a number is a scale of the natural size.
  let zoom = null;
  const naturalWidth = (svg) => parseFloat(svg.getAttribute("width")) * (4 / 3); // pt -> px

  function applyZoom() {
    const svg = graphBox.querySelector("svg");
    if (!svg) return;
    const natural = naturalWidth(svg);
    let width = null;
    if (zoom !== null) {
      width = natural * zoom;
    } else {
      const room = graphBox.clientWidth - 4;
      if (natural > room && room > 0 && room / natural >= 0.45) width = room;
    }
    svg.style.width = width === null ? "" : `${width}px`;
    svg.style.height = width === null ? "" : "auto";
  }

  function zoomBy(factor) {
    const svg = graphBox.querySelector("svg");
    if (!svg) return;
    const now = svg.getBoundingClientRect().width / naturalWidth(svg);
    zoom = Math.min(4, Math.max(0.1, now * factor));
    applyZoom();
  }

  graphBox.addEventListener("wheel", (event) => {
    if (!event.ctrlKey) return; // plain wheel scrolls
    event.preventDefault();
    zoomBy(event.deltaY < 0 ? 1.1 : 1 / 1.1);
  }, { passive: false });

  function drawSvgNow() {
    graphBox.innerHTML = model.get("svg") || "";
    nodeIndex = new Map();
    edgeIndex = new Map();
    const tasks = model.get("tasks") || [];
    const pairs = new Map();
    for (const t of tasks) for (const d of t.dependencies) pairs.set(`edge-${d}-${t.id}`, [d, t.id]);
    for (const g of graphBox.querySelectorAll("g.node")) {
      const id = g.getAttribute("id") || "";
      if (!id.startsWith("node-")) continue;
      const tid = id.slice(5);
      nodeIndex.set(tid, g);
      g.setAttribute("data-task", tid);
      g.addEventListener("click", (event) => { event.stopPropagation(); clickNode(tid); });
      const title = g.querySelector("title");
      if (title) title.textContent = tid;
    }
    for (const g of graphBox.querySelectorAll("g.edge")) {
      const pair = pairs.get(g.getAttribute("id"));
      if (!pair) continue;
      edgeIndex.set(g.getAttribute("id"), pair);
      g.addEventListener("click", (event) => { event.stopPropagation(); clickEdge(g, pair); });
    }
    recolourNow();
    highlight();
    applyZoom();
  }

  function recolourNow() {
    const statuses = model.get("statuses") || {};
    const stale = new Set(model.get("stale") || []);
    const all = names(model, "statuses");
    for (const [tid, g] of nodeIndex) {
      const status = statuses[tid] || "pending";
      for (const s of all) g.classList.toggle(`status-${s}`, s === status);
      g.classList.toggle("stale", stale.has(tid));
      g.setAttribute("data-status", status);
    }
  }

  function highlight() {
    const selected = model.get("selected");
    for (const [tid, g] of nodeIndex) g.classList.toggle("onb-selected", tid === selected);
  }

  function clickNode(tid) {
    if (pickingDependencyFor) {
      const task = pickingDependencyFor;
      pickingDependencyFor = null;
      graphBox.classList.remove("onb-picking");
      if (tid !== task) send({ op: "add_dependency", task, dependency: tid });
      return;
    }
    clearEdge();
    model.set("selected", tid);
    model.save_changes();
  }

  function clearEdge() {
    selectedEdge = null;
    removeEdgeBtn.disabled = true;
    for (const g of graphBox.querySelectorAll("g.edge.onb-selected")) g.classList.remove("onb-selected");
  }

  function clickEdge(g, pair) {
    clearEdge();
    selectedEdge = pair;
    g.classList.add("onb-selected");
    removeEdgeBtn.disabled = false;
    say("info", `Selected: “${pair[1]}” depends on “${pair[0]}”. Press “− Dependency” to remove it.`);
  }

  graphBox.addEventListener("click", () => clearEdge());
  el.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && pickingDependencyFor) {
      pickingDependencyFor = null;
      graphBox.classList.remove("onb-picking");
      say("info", "");
    }
  });

  // --- inspector and forms ---------------------------------------------------------------
  function drawInspector() {
    const info = model.get("inspector") || {};
    inspector.innerHTML = "";
    form.innerHTML = "";
    if (!info.id) {
      inspector.append(h("div", { class: "onb-note", text: "Click a task to see it here." }));
      return;
    }
    const rows = [
      ["status", h("span", { class: `onb-badge status-${info.status}`, "data-testid": "inspector-status", text: info.status + (info.stale ? " (stale: edited since the last run)" : "") })],
      ["kind", info.kind],
      ["depends on", (info.dependencies || []).map((d) => d.name).join(", ") || "—"],
      ["needed by", (info.dependents || []).map((d) => d.name).join(", ") || "—"],
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
    if (info.error) {
      inspector.append(h("div", { class: "onb-error", "data-testid": "inspector-error", text: info.error }));
      inspector.append(h("button", { "data-testid": "retry-task", text: "↻ Retry", onclick: () => send({ op: "retry", task: info.id }) }));
    }
    if (info.result) inspector.append(resultView(info.result));
    showEditForm(info);
  }

  function field(label, input) {
    return h("label", { class: "onb-field" }, h("span", { text: label }), input);
  }

  function kindSelect(value) {
    const select = h("select", { "data-testid": "edit-kind" });
    for (const k of names(model, "kinds")) select.append(h("option", { value: k, text: k, selected: k === value ? "" : null }));
    return select;
  }

  function showEditForm(info) {
    const name = h("input", { "data-testid": "edit-name", value: info.name });
    const description = h("textarea", { "data-testid": "edit-description", rows: 3 });
    description.value = info.description || "";
    const kind = kindSelect(info.kind);
    form.append(h("details", { class: "onb-edit" }, h("summary", { text: "Edit task" }),
      field("name", name), field("description", description), field("kind", kind),
      h("button", {
        "data-testid": "save-task", text: "Save",
        onclick: () => send({ op: "update_task", task: info.id, name: name.value, description: description.value, kind: kind.value }),
      })));
  }

  function showAddForm() {
    form.innerHTML = "";
    const name = h("input", { "data-testid": "new-name", placeholder: "name" });
    const description = h("textarea", { "data-testid": "new-description", rows: 3, placeholder: "what to do" });
    const kind = kindSelect(model.get("vocabulary").default_kind);
    const selected = model.get("selected");
    const dep = h("input", { type: "checkbox", "data-testid": "new-after-selected", checked: selected ? "" : null });
    form.append(h("div", { class: "onb-edit" }, h("strong", { text: "New task" }),
      field("name", name), field("description", description), field("kind", kind),
      selected ? field(`after “${selected}”`, dep) : null,
      h("button", {
        "data-testid": "create-task", text: "Add",
        onclick: () => send({ op: "add_task", name: name.value, description: description.value, kind: kind.value, dependencies: selected && dep.checked ? [selected] : [] }),
      }),
      h("button", { text: "Cancel", onclick: () => drawInspector() })));
    name.focus();
  }

  // --- progress and timeline --------------------------------------------------------------
  function drawProgress() {
    const p = model.get("progress") || {};
    const busy = model.get("busy");
    progress.textContent = busy === "planning" ? "planning…" : (p.text || "");
    el.classList.toggle("onb-busy", !!busy);
    runBtn.disabled = busy === "running" || busy === "planning";
    cancelBtn.disabled = busy !== "running";
    retryBtn.disabled = busy === "running" || !((p.failed || 0) + (p.skipped || 0));
  }

  function drawGantt() {
    const rows = model.get("timeline") || [];
    gantt.innerHTML = "";
    if (!rows.length) return;
    const names = new Map((model.get("tasks") || []).map((t) => [t.id, t.name]));
    const end = Math.max(...rows.map((r) => r.end), 1e-6);
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
        class: `onb-bar status-${r.status}`,
      });
      const tip = svgEl("title");
      tip.textContent = `${names.get(r.id) || r.id}: ${fmtSeconds(r.start)} → ${fmtSeconds(r.end)} (${r.status})`;
      bar.append(tip);
      svg.append(bar);
    });
    const axis = svgEl("text", { x: label, y: rows.length * rowH + 14, class: "onb-gantt-label" });
    axis.textContent = `0 → ${fmtSeconds(end)}`;
    svg.append(axis);
    gantt.append(h("div", { class: "onb-gantt-title", text: "Timeline" }), svg);
  }

  function drawMessage() {
    const m = model.get("message") || {};
    say(m.level || "info", m.text || "");
  }

  title.textContent = model.get("title") || "";
  drawSvg();
  drawInspector();
  drawProgress();
  drawGantt();
  drawMessage();

  const handlers = [
    ["change:svg", drawSvg],
    ["change:tasks", drawSvg],
    ["change:statuses", recolour],
    ["change:stale", recolour],
    ["change:selected", highlight],
    ["change:inspector", drawInspector],
    ["change:progress", drawProgress],
    ["change:busy", drawProgress],
    ["change:timeline", drawGantt],
    ["change:message", drawMessage],
    ["change:title", () => { title.textContent = model.get("title") || ""; }],
  ];
  for (const [name, fn] of handlers) model.on(name, fn);
  return () => { for (const [name, fn] of handlers) model.off(name, fn); };
}

export default { render };
