/* actlas viewer: a multi-resolution activation atlas on OpenSeadragon.
 *
 * Data: window.ACTLAS_DATA (data.js) or data.json, written by the viewer stage (actlas.formats.viewer):
 *   {title, classes: [name], layers: [{layer, grids: [{grid, icon_size, size_px, tile_source,
 *    cells: [{i, j, count, label, top, attribution: {classIndex: value}, faithfulness, icon, examples}]}]}],
 *    extras: [{id, layer, kind: "class"|"compare", title, about, axis: {left, right}|null, grids: [one grid]}],
 *    patches: [{name, title, layer, report, figure, figures}]}; a cell a patch experiment tested lists it in
 *    cell.patches: [{experiment, title, patch, kind, discovered, population, static, dynamic: {k, n, rate, ci},
 *    best_control: {static, dynamic}, above_controls: {static, dynamic}, report, figure}].
 * Concepts (a layer's dictionary, actlas.stages.concepts): data.concepts: [{layer, method, size, k, figures,
 *    concepts: [{index, label, frequency, count, faithfulness, stability, icon, top, examples}],
 *    cells: {N: [{i, j, concepts: [[index, weight]], share, fires: [[index, share of the cell's samples]]}]}}];
 *    on a layer's main atlas the panel lists them; choosing one shades the cells where it fires.
 *    The concept map (#concept-map) shows each concept's icon at its centroid [x, y] on the atlas (code-weighted
 *    mean of its samples' coords), sized by frequency: the most frequent that do not overlap at the current zoom.
 * The atlas switch lists maps: each layer's main atlas, then its class atlases and comparisons,
 * then the patch experiments' reports (choosing one opens its figure);
 * the URL fragment (#features.13 or #features.13/class-red-fox) names the one shown.
 * Every grid of a map is one tiled image over the same world rectangle (0, 0)-(1, 1);
 * grids are stacked coarse to fine and zooming in reveals finer ones (chooseGrid), as in a
 * deep-zoom map.
 * Plain script, no build step; all text from the data goes through textContent.
 */
(function () {
  "use strict";

  const MAX_DIM = 0.85;        // opacity of the mask over a cell with no attribution to the class

  const $ = (id) => document.getElementById(id);
  const state = {
    data: null, maps: [], viewer: null, layer: 0, active: 0, cellsEl: null, cellEls: null,
    hover: null, pinned: null, highlight: null, classKeys: [], keyToIndex: new Map(),
    concepts: new Map(), concept: null,
    conceptMap: false, mapEl: null, mapSpread: null, markers: [],
  };
  window.actlas = state;  // for debugging and tests

  function fail(message) {
    const el = $("error");
    el.textContent = message;
    el.hidden = false;
  }

  async function loadData() {
    if (window.ACTLAS_DATA) return window.ACTLAS_DATA;
    const response = await fetch("data.json");
    if (!response.ok) throw new Error("data.json: HTTP " + response.status + "; rebuild the viewer with `actlas viewer RUN`");
    return response.json();
  }

  /* ---------------------------------------------------------------- classes and search */

  function setupClasses(classes) {
    // ImageNet repeats some names ("crane"): those get their index appended to stay unique.
    const seen = new Map();
    classes.forEach((name) => seen.set(name, (seen.get(name) || 0) + 1));
    const list = $("class-list");
    state.classKeys = classes.map((name, k) => (seen.get(name) > 1 ? name + " (" + k + ")" : name));
    state.classKeys.forEach((key, k) => {
      state.keyToIndex.set(key.toLowerCase(), k);
      const option = document.createElement("option");
      option.value = key;
      list.appendChild(option);
    });
    const search = $("class-search");
    search.addEventListener("input", () => chooseClass(search.value, false));
    search.addEventListener("change", () => chooseClass(search.value, true));
    search.addEventListener("keydown", (e) => { if (e.key === "Enter") chooseClass(search.value, true); });
  }

  function chooseClass(text, allowPrefix) {
    const query = text.trim().toLowerCase();
    if (!query) return setHighlight(null);
    let k = state.keyToIndex.get(query);
    if (k === undefined && allowPrefix) {
      const match = state.classKeys.findIndex((key) => key.toLowerCase().startsWith(query));
      if (match >= 0) k = match;
    }
    if (k !== undefined) setHighlight(k);
  }

  function setHighlight(k) {
    state.highlight = k;
    if (k !== null && state.concept !== null) chooseConcept(null);
    applyHighlight();
  }

  /* The mask over each cell: transparent without a highlight; with one, the lower the cell's
   * attribution to the class (relative to the grid's largest), the darker its mask. */
  function applyHighlight() {
    const grid = activeGrid();
    const info = $("highlight-info");
    if (!grid || !state.cellEls) return;
    if (state.concept !== null) return shadeConcept(grid);
    if (state.highlight === null) {
      state.cellEls.forEach((el) => { el.style.opacity = "0"; el.dataset.weight = ""; });
      info.textContent = "";
      return;
    }
    const key = String(state.highlight);
    let max = 0;
    grid.cells.forEach((c) => { max = Math.max(max, (c.attribution && c.attribution[key]) || 0); });
    state.cellEls.forEach((el, index) => {
      const cell = grid.byIndex.get(index);
      const value = cell && cell.attribution ? cell.attribution[key] || 0 : 0;
      const weight = max > 0 ? Math.sqrt(Math.max(value, 0) / max) : 0;
      el.dataset.weight = weight.toFixed(3);
      el.style.opacity = (MAX_DIM * (1 - weight)).toFixed(3);
    });
    const n = grid.cells.filter((c) => c.attribution && (c.attribution[key] || 0) > 0).length;
    info.textContent = "highlighting " + state.classKeys[state.highlight] + ": " + n + " of " + grid.cells.length +
      " cells attribute to it" + (max > 0 ? " (max " + max.toPrecision(3) + ")" : "");
  }

  /* ---------------------------------------------------------------- layers and grids */

  function layerGrids() { return state.maps[state.layer].grids; }
  function activeGrid() { return layerGrids()[state.active]; }

  /* Maps in switch order: each layer's main atlas, then the class atlases and comparisons of that layer. */
  function listMaps(data) {
    const extras = data.extras || [];
    const maps = [];
    data.layers.forEach((layer) => {
      maps.push({ id: layer.layer, layer: layer.layer, kind: "atlas", title: layer.layer, about: "", axis: null,
                  grids: layer.grids });
      extras.filter((e) => e.layer === layer.layer).forEach((e) => maps.push(Object.assign({}, e, {
        title: (data.layers.length > 1 ? e.layer + " · " : "") + e.title })));
    });
    extras.filter((e) => !data.layers.some((l) => l.layer === e.layer))
      .forEach((e) => maps.push(Object.assign({}, e, { title: e.layer + " · " + e.title })));
    maps.forEach((map) => map.grids.forEach((grid) => {
      grid.byIndex = new Map(grid.cells.map((c) => [c.j * grid.grid + c.i, c]));
    }));
    return maps;
  }

  function setupLayers() {
    const select = $("layer");
    state.maps.forEach((map, k) => {
      const option = document.createElement("option");
      option.value = String(k);
      option.textContent = map.title;
      select.appendChild(option);
    });
    const reports = state.data.patches || [];
    if (reports.length) {
      const group = document.createElement("optgroup");
      group.label = "patch experiments (open the figure)";
      reports.forEach((r, k) => {
        const option = document.createElement("option");
        option.value = "patch:" + k;
        option.textContent = "patch: " + r.title;
        group.appendChild(option);
      });
      select.appendChild(group);
    }
    $("layer-field").hidden = state.maps.length + reports.length < 2;
    select.addEventListener("change", () => {
      if (select.value.startsWith("aligned:")) return;  // aligned atlases side by side: aligned.js
      if (select.value.startsWith("patch:")) {
        const r = reports[Number(select.value.slice(6))];
        select.value = String(state.layer);  // the map stays; the report's figure opens beside it
        window.open(r.figure || r.report, "_blank", "noopener");
        return;
      }
      openLayer(Number(select.value));
      history.replaceState(null, "", "#" + state.maps[state.layer].id);
    });
    window.addEventListener("hashchange", () => {
      if (window.location.hash.startsWith("#aligned/")) return;  // aligned.js
      const k = mapFromHash();
      if (k !== state.layer) { select.value = String(k); openLayer(k); }
    });
  }

  function mapFromHash() {
    let id = "";
    try { id = decodeURIComponent(window.location.hash.slice(1)); } catch (err) { id = ""; }
    const k = state.maps.findIndex((map) => map.id === id);
    return k >= 0 ? k : 0;
  }

  function showAbout(map) {
    $("about").textContent = map.about || "";
    $("about").hidden = !map.about;
    $("axis").hidden = !map.axis;
    $("axis-left").textContent = map.axis ? "← " + map.axis.left : "";
    $("axis-right").textContent = map.axis ? map.axis.right + " →" : "";
  }

  function openLayer(k) {
    state.layer = k;
    showAbout(state.maps[k]);
    showConceptList(state.maps[k]);
    buildConceptMap();
    state.active = -1;
    state.hover = null;
    unpin();
    const viewer = state.viewer;
    viewer.world.removeAll();
    viewer.clearOverlays();
    state.cellsEl = null;
    const grids = layerGrids();
    const levels = $("grid-levels");
    levels.textContent = "";
    grids.forEach((grid, g) => {
      const chip = document.createElement("span");
      chip.textContent = String(grid.grid);
      chip.dataset.grid = String(grid.grid);
      levels.appendChild(chip);
      viewer.addTiledImage({
        tileSource: grid.tile_source, x: 0, y: 0, width: 1, index: g, opacity: g === 0 ? 1 : 0,
        success: (event) => {
          grid.item = event.item;
          if (g === 0) {
            event.item.addOnceHandler("fully-loaded-change", () => markReady());
            setZoomLimit();
            viewer.viewport.goHome(true);
          }
          updateGrid();
        },
        error: (event) => fail("cannot open the tiles of grid " + grid.grid + ": " + event.message),
      });
    });
  }

  /* Zoom in until a cell of the finest grid fills about half the view, however few pixels the
   * atlas has (a small run's atlas may be smaller than the screen). */
  function setZoomLimit() {
    const viewport = state.viewer.viewport;
    const grids = layerGrids();
    viewport.maxZoomLevel = viewport.getHomeZoom() * Math.max(4, grids[grids.length - 1].grid / 2);
  }

  function markReady() {
    if (document.body.dataset.ready) return;
    window.actlasLoadMs = performance.now();
    document.body.dataset.ready = "1";
  }

  /* Grid for the current zoom, as in a deep-zoom map: the coarsest grid at the home view, and
   * grid g once the zoom (relative to home) passes the geometric mean of the size ratios of
   * grids g-1 and g to the coarsest, so cells keep about the same size on screen. */
  function chooseGrid() {
    const grids = layerGrids();
    const viewport = state.viewer.viewport;
    const zoom = viewport.getZoom(true) / viewport.getHomeZoom();
    const base = grids[0].grid;
    let chosen = 0;
    for (let g = 1; g < grids.length; g++) {
      if (zoom >= Math.sqrt(grids[g - 1].grid * grids[g].grid) / base) chosen = g;
    }
    return chosen;
  }

  function updateGrid() {
    const g = chooseGrid();
    if (g === state.active && state.cellsEl) return;
    state.active = g;
    // Grids are stacked coarse to fine: those up to the active one are drawn, finer ones
    // hidden, so a coarser grid stays visible while the finer one's tiles load.
    layerGrids().forEach((grid, k) => { if (grid.item) grid.item.setOpacity(k <= g ? 1 : 0); });
    const grid = activeGrid();
    $("grid-size").textContent = "grid " + grid.grid + " × " + grid.grid;
    $("grid-size").dataset.grid = String(grid.grid);
    document.querySelectorAll("#grid-levels span").forEach((chip) => {
      chip.classList.toggle("active", chip.dataset.grid === String(grid.grid));
    });
    buildCells(grid);
    applyHighlight();
    if (state.hover) setHover(null);
  }

  /* One overlay over the whole atlas holding an N x N CSS grid of cell elements. */
  function buildCells(grid) {
    const n = grid.grid;
    const wrapper = document.createElement("div");  // OpenSeadragon sets the overlay's display
    wrapper.className = "cells-overlay";
    const el = document.createElement("div");
    el.className = "cells";
    wrapper.appendChild(el);
    el.style.gridTemplateColumns = "repeat(" + n + ", 1fr)";
    el.style.gridTemplateRows = "repeat(" + n + ", 1fr)";
    const cellEls = new Array(n * n);
    for (let j = 0; j < n; j++) {
      for (let i = 0; i < n; i++) {
        const cellEl = document.createElement("div");
        const cell = grid.byIndex.get(j * n + i);
        cellEl.className = cell ? "cell" : "cell empty";
        cellEl.dataset.i = String(i);
        cellEl.dataset.j = String(j);
        if (cell) cellEl.dataset.count = String(cell.count);
        cellEls[j * n + i] = cellEl;
        el.appendChild(cellEl);
      }
    }
    if (state.cellsEl) state.viewer.removeOverlay(state.cellsEl);
    state.viewer.addOverlay({ element: wrapper, location: new OpenSeadragon.Rect(0, 0, 1, 1) });
    state.cellsEl = wrapper;
    state.cellEls = cellEls;
    el.dataset.grid = String(n);
    if (state.pinned && state.pinned.grid === grid) markSelected();
  }

  /* ---------------------------------------------------------------- hover, click, details */

  function cellAt(pixel) {
    const grid = activeGrid();
    if (!grid) return null;
    const p = state.viewer.viewport.pointFromPixel(pixel);
    const n = grid.grid;
    const i = Math.floor(p.x * n), j = Math.floor(p.y * n);
    if (i < 0 || j < 0 || i >= n || j >= n) return null;
    return { grid, index: j * n + i, cell: grid.byIndex.get(j * n + i) || null };
  }

  function setHover(hit, clientX, clientY) {
    const tooltip = $("tooltip");
    if (state.hover && state.cellEls && state.cellEls[state.hover.index]) {
      state.cellEls[state.hover.index].classList.remove("hover");
    }
    state.hover = hit && hit.cell ? hit : null;
    if (!state.hover) {
      tooltip.hidden = true;
      if (!state.pinned) showCell(null);
      return;
    }
    state.cellEls[hit.index].classList.add("hover");
    tooltip.textContent = hit.cell.label + " · " + hit.cell.count + (hit.cell.count === 1 ? " sample" : " samples");
    tooltip.style.left = clientX + 14 + "px";
    tooltip.style.top = clientY + 14 + "px";
    tooltip.hidden = false;
    if (!state.pinned) showCell(hit);
  }

  function fmt(value, digits) {
    return value === null || value === undefined ? "–" : Number(value).toPrecision(digits || 3);
  }

  function showCell(hit) {
    const section = $("cell");
    $("hint").hidden = !!hit;
    section.hidden = !hit;
    if (!hit) return;
    const cell = hit.cell;
    const icon = $("cell-icon");
    // a small icon (a 32 px model's) is shown enlarged as crisp pixel blocks, never smoothed
    icon.onload = () => { icon.style.imageRendering = icon.naturalWidth < 96 ? "pixelated" : "auto"; };
    if (cell.icon) { icon.src = cell.icon; icon.hidden = false; } else { icon.hidden = true; }
    $("cell-label").textContent = cell.label;
    $("cell-meta").textContent = cell.count + (cell.count === 1 ? " sample" : " samples") +
      " · faithfulness " + fmt(cell.faithfulness, 2) +
      " · cell (" + cell.i + ", " + cell.j + ") of grid " + hit.grid.grid;
    const body = $("cell-top").querySelector("tbody");
    body.textContent = "";
    (cell.top || []).forEach(([name, value]) => {
      const row = body.insertRow();
      row.insertCell().textContent = name;
      row.insertCell().textContent = fmt(value, 3);
    });
    $("cell-pinned").hidden = !(state.pinned && state.pinned.cell === cell);
  }

  function showExamples(hit) {
    const section = $("examples");
    const examples = (hit && hit.cell.examples) || [];
    section.hidden = examples.length === 0;
    fillExamples($("example-list"), examples);
  }

  function fillExamples(list, examples) {
    list.textContent = "";
    examples.forEach((ex) => {
      const figure = document.createElement("figure");
      figure.className = "example " + (ex.label && ex.pred ? (ex.label === ex.pred ? "correct" : "wrong") : "");
      const img = document.createElement("img");
      img.src = ex.src;
      img.alt = "dataset example: " + (ex.label || "unknown label");
      img.loading = "eager";
      const caption = document.createElement("figcaption");
      caption.textContent = "true: " + (ex.label || "?") + " · predicted: " + (ex.pred || "?") +
        (ex.prob !== null && ex.prob !== undefined ? " (" + fmt(ex.prob, 2) + ")" : "");
      figure.append(img, caption);
      list.appendChild(figure);
    });
  }

  function pct(r) {
    if (!r || !r.n) return "n/a";
    return (100 * r.rate).toFixed(1) + "% [" + (100 * r.ci[0]).toFixed(1) + ", " + (100 * r.ci[1]).toFixed(1) +
      "] of " + r.n;
  }

  /* The patch experiments that pasted this cell's icon or one of its dataset patches, with their numbers. */
  function showPatches(hit) {
    const list = $("patch-list");
    list.textContent = "";
    const tests = (hit && hit.cell.patches) || [];
    $("patch-tests").hidden = tests.length === 0;
    tests.forEach((t) => {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = t.report;
      link.target = "_blank";
      link.rel = "noopener";
      link.textContent = t.title + (t.discovered ? " (discovered " : " (") + t.kind + ")";
      const numbers = document.createElement("div");
      const control = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%");
      numbers.textContent = t.population + ": static " + pct(t.static) + " (best control " +
        control(t.best_control.static) + "); dynamic " + pct(t.dynamic) + " (best control " +
        control(t.best_control.dynamic) + ")";
      const verdict = document.createElement("div");
      verdict.className = "verdict";
      const above = t.above_controls || {};
      verdict.textContent = "interval above both controls: static " + (above.static ? "yes" : "no") +
        ", dynamic " + (above.dynamic ? "yes" : "no");
      item.append(link, numbers, verdict);
      if (t.figure) {
        const fig = document.createElement("a");
        fig.href = t.figure;
        fig.target = "_blank";
        fig.rel = "noopener";
        fig.textContent = "photos before and after";
        item.appendChild(fig);
      }
      list.appendChild(item);
    });
  }

  function markSelected() {
    state.cellEls.forEach((el) => el.classList.remove("selected"));
    if (state.pinned && state.pinned.grid === activeGrid()) state.cellEls[state.pinned.index].classList.add("selected");
  }

  function pin(hit) {
    state.pinned = hit;
    markSelected();
    showCell(hit);
    showPatches(hit);
    showExamples(hit);
    showCellConcepts(hit);
  }

  function unpin() {
    state.pinned = null;
    if (state.cellEls) markSelected();
    showExamples(null);
    showPatches(null);
    showCellConcepts(null);
    showCell(state.hover);
  }

  function setupMouse(viewer) {
    new OpenSeadragon.MouseTracker({
      element: viewer.canvas,
      moveHandler: (e) => {
        const rect = viewer.canvas.getBoundingClientRect();
        if (hoverMarker(e, rect)) return;  // a concept map marker, not the cell under it
        setHover(cellAt(e.position), rect.left + e.position.x, rect.top + e.position.y);
      },
      leaveHandler: () => setHover(null),
    });
    viewer.addHandler("canvas-click", (e) => {
      if (!e.quick) return;  // a drag, not a click
      if (clickMarker(e)) return;
      const hit = cellAt(e.position);
      if (hit && hit.cell) pin(hit); else unpin();
    });
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") unpin(); });
  }


  /* ---------------------------------------------------------------- concepts */

  function setupConcepts(entries) {
    (entries || []).forEach((entry) => {
      entry.byIndex = new Map(entry.concepts.map((c) => [c.index, c]));
      entry.cellMaps = {};
      Object.keys(entry.cells || {}).forEach((n) => {
        entry.cellMaps[n] = new Map(entry.cells[n].map((c) => [c.j * Number(n) + c.i, c]));
      });
      state.concepts.set(entry.layer, entry);
    });
  }

  function layerConcepts() {
    const map = state.maps[state.layer];
    return map && map.kind === "atlas" ? state.concepts.get(map.layer) || null : null;
  }

  function pct1(v) { return (100 * v).toFixed(1) + "%"; }

  function conceptTitle(c) { return "concept " + c.index + (c.label ? " · " + c.label : ""); }

  /* The layer's concepts, most frequent first (those active on no sample left out). */
  function showConceptList(map) {
    state.concept = null;
    $("concept").hidden = true;
    const entry = map && map.kind === "atlas" ? state.concepts.get(map.layer) : null;
    $("concepts").hidden = !entry;
    const list = $("concept-list");
    list.textContent = "";
    if (!entry) return;
    const f = entry.figures || {};
    $("concept-figures").textContent = entry.size + " concepts (" + entry.method + ", k " + entry.k + ") · held-out R² " +
      fmt(f.r2, 3) + " · L0 " + fmt(f.l0, 3) + " · dead " + (f.dead === undefined ? "–" : pct1(f.dead)) +
      (f.stability !== undefined ? " · stability " + fmt(f.stability, 2) : "");
    entry.concepts.filter((c) => c.count > 0).sort((a, b) => b.frequency - a.frequency || a.index - b.index)
      .forEach((c) => list.appendChild(conceptButton(c, pct1(c.frequency))));
  }

  function conceptImage(c) {
    const img = document.createElement("img");
    img.src = c.icon;
    img.alt = "icon of concept " + c.index;
    return img;
  }

  function conceptButton(c, note) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.concept = String(c.index);
    const img = conceptImage(c);
    const text = document.createElement("span");
    text.textContent = conceptTitle(c) + " · " + note;
    button.append(img, text);
    button.addEventListener("click", () => chooseConcept(state.concept === c.index ? null : c.index));
    item.appendChild(button);
    return item;
  }

  function chooseConcept(index) {
    const entry = layerConcepts();
    state.concept = entry && index !== null ? index : null;
    if (state.concept !== null && state.highlight !== null) {
      state.highlight = null;
      $("class-search").value = "";
    }
    document.querySelectorAll("#concept-list button, #cell-concept-list button").forEach((b) => {
      b.classList.toggle("chosen", b.dataset.concept === String(state.concept));
    });
    const section = $("concept");
    section.hidden = state.concept === null;
    if (state.concept !== null) {
      const c = entry.byIndex.get(state.concept);
      const icon = $("concept-icon");
      icon.onload = () => { icon.style.imageRendering = icon.naturalWidth < 96 ? "pixelated" : "auto"; };
      icon.src = c.icon;
      $("concept-label").textContent = conceptTitle(c);
      $("concept-meta").textContent = "active on " + pct1(c.frequency) + " of the samples (" + c.count + ")" +
        " · faithfulness " + fmt(c.faithfulness, 2) +
        (c.stability !== null && c.stability !== undefined ? " · stability " + fmt(c.stability, 2) : "");
      const body = $("concept-top").querySelector("tbody");
      body.textContent = "";
      (c.top || []).forEach(([name, value]) => {
        const row = body.insertRow();
        row.insertCell().textContent = name;
        row.insertCell().textContent = fmt(value, 3);
      });
      fillExamples($("concept-examples"), c.examples || []);
    }
    applyHighlight();
    placeConceptMarkers();
  }

  /* Shade each cell of the grid by the share of its samples the chosen concept is active on. */
  function shadeConcept(grid) {
    const entry = layerConcepts();
    const cells = entry && entry.cellMaps[String(grid.grid)];
    const key = state.concept;
    const share = new Map();
    let max = 0;
    if (cells) {
      cells.forEach((c, index) => {
        const hit = (c.fires || []).find(([j]) => j === key);
        if (hit) { share.set(index, hit[1]); max = Math.max(max, hit[1]); }
      });
    }
    state.cellEls.forEach((el, index) => {
      const value = share.get(index) || 0;
      const weight = max > 0 ? Math.sqrt(value / max) : 0;
      el.dataset.weight = weight.toFixed(3);
      el.style.opacity = (MAX_DIM * (1 - weight)).toFixed(3);
    });
    const c = entry.byIndex.get(key);
    $("highlight-info").textContent = "concept " + key + (c && c.label ? " (" + c.label + ")" : "") + " fires in " +
      share.size + " of " + grid.cells.length + " cells" + (cells ? "" : " (no concepts for this grid)");
  }

  /* A pinned cell's direction as a few concepts, with their weights. */
  function showCellConcepts(hit) {
    const entry = layerConcepts();
    const list = $("cell-concept-list");
    list.textContent = "";
    const cells = hit && entry ? entry.cellMaps[String(hit.grid.grid)] : null;
    const record = cells ? cells.get(hit.index) : null;
    $("cell-concepts").hidden = !record;
    if (!record) return;
    $("cell-concept-share").textContent = "together " + pct1(record.share) + " of the cell's direction (centred)";
    record.concepts.forEach(([index, weight]) => {
      const c = entry.byIndex.get(index);
      if (c) list.appendChild(conceptButton(c, "weight " + fmt(weight, 3)));
    });
    document.querySelectorAll("#cell-concept-list button").forEach((b) => {
      b.classList.toggle("chosen", b.dataset.concept === String(state.concept));
    });
  }

  /* ---------------------------------------------------------------- concept map */

  const MARKER_SIDE = [26, 56];  // a marker's icon side in pixels, least to most frequent concept
  const MARKER_GAP = 3;          // pixels kept free around each marker shown

  /* A layer of markers inside OpenSeadragon's canvas element, so that wheel and drag over a marker still
   * zoom and pan (the canvas's mouse tracker sees them); a click on one chooses its concept. */
  function setupConceptMap(viewer) {
    const layer = document.createElement("div");
    layer.id = "concept-map-layer";
    layer.hidden = true;
    viewer.canvas.appendChild(layer);
    state.mapEl = layer;
    const toggle = $("concept-map");
    toggle.addEventListener("change", () => { state.conceptMap = toggle.checked; buildConceptMap(); });
    let pending = false;
    const redraw = () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; placeConceptMarkers(); });
    };
    ["animation", "animation-finish", "resize", "update-viewport"].forEach((name) => viewer.addHandler(name, redraw));
    viewer.canvas.addEventListener("pointerleave", () => {
      viewer.canvas.style.cursor = "";
      state.markers.forEach((m) => m.el.classList.remove("hover"));
    });
  }

  /* The markers of the layer's live concepts, most frequent first, each sized by the square root of its
   * frequency relative to the most frequent; measured once (their size does not change with the zoom). */
  function buildConceptMap() {
    const layer = state.mapEl;
    if (!layer) return;
    const entry = layerConcepts();
    const live = entry ? entry.concepts.filter((c) => c.count > 0 && c.centroid) : [];
    $("concept-map-field").hidden = live.length === 0;
    layer.textContent = "";
    state.markers = [];
    layer.hidden = !(state.conceptMap && live.length);
    $("concept-map-info").textContent = "";
    if (layer.hidden) return;
    live.sort((a, b) => b.frequency - a.frequency || a.index - b.index);
    const most = live[0].frequency || 1;
    const spread = document.createElement("div");
    spread.className = "concept-spread";
    spread.hidden = true;
    layer.appendChild(spread);
    state.markers = live.map((c) => {
      const side = Math.round(MARKER_SIDE[0] + (MARKER_SIDE[1] - MARKER_SIDE[0]) * Math.sqrt(c.frequency / most));
      const el = document.createElement("div");
      el.className = "concept-marker";
      el.dataset.concept = String(c.index);
      const img = conceptImage(c);
      img.width = side;
      img.height = side;
      const caption = document.createElement("span");
      caption.textContent = c.label || "concept " + c.index;
      el.append(img, caption);
      layer.appendChild(el);
      return { c, el, side, w: 0, h: 0 };
    });
    state.markers.forEach((m) => { m.w = m.el.offsetWidth; m.h = m.el.offsetHeight; });
    state.mapSpread = spread;
    placeConceptMarkers();
  }

  /* Greedy placement at the current zoom: the chosen concept first, then by frequency, each shown when its
   * box (icon centred on its centroid, caption below) lies in the view and clear of those already shown. */
  function placeConceptMarkers() {
    const layer = state.mapEl;
    if (!layer || layer.hidden || !state.markers.length) return;
    const viewport = state.viewer.viewport;
    const width = layer.clientWidth, height = layer.clientHeight;
    const order = state.markers.slice().sort((a, b) => (b.c.index === state.concept) - (a.c.index === state.concept));
    const placed = [];
    let inView = 0;
    order.forEach((m) => {
      const p = viewport.pixelFromPoint(new OpenSeadragon.Point(m.c.centroid[0], m.c.centroid[1]), true);
      const box = { l: p.x - m.w / 2, t: p.y - m.side / 2, r: p.x + m.w / 2, b: p.y - m.side / 2 + m.h };
      const chosen = m.c.index === state.concept;
      const visible = box.r > 0 && box.b > 0 && box.l < width && box.t < height;
      if (visible) inView += 1;
      const clear = visible && placed.every((q) => box.l >= q.r + MARKER_GAP || box.r + MARKER_GAP <= q.l ||
                                                  box.t >= q.b + MARKER_GAP || box.b + MARKER_GAP <= q.t);
      const shown = clear || (chosen && visible);
      if (shown) placed.push(box);
      m.box = shown ? box : null;
      m.el.classList.toggle("shown", shown);
      m.el.classList.toggle("chosen", chosen);
      if (shown) m.el.style.transform = "translate(" + Math.round(box.l) + "px, " + Math.round(box.t) + "px)";
    });
    layer.dataset.shown = String(placed.length);
    $("concept-map-info").textContent = placed.length + " of " + state.markers.length + " shown" +
      (placed.length < inView ? " · zoom in for more" : "");
    showSpread(viewport);
  }

  /* The chosen concept's spread (code-weighted RMS distance of its samples to its centroid) as a ring. */
  function showSpread(viewport) {
    const ring = state.mapSpread;
    const m = state.markers.find((x) => x.c.index === state.concept);
    ring.hidden = !m || !(m.c.spread > 0);
    if (ring.hidden) return;
    const centre = viewport.pixelFromPoint(new OpenSeadragon.Point(m.c.centroid[0], m.c.centroid[1]), true);
    const edge = viewport.pixelFromPoint(new OpenSeadragon.Point(m.c.centroid[0] + m.c.spread, m.c.centroid[1]), true);
    const r = Math.max(4, edge.x - centre.x);
    Object.assign(ring.style, { width: 2 * r + "px", height: 2 * r + "px",
                                transform: "translate(" + Math.round(centre.x - r) + "px, " + Math.round(centre.y - r) + "px)" });
  }

  /* The concept whose shown marker is under the pointer (OpenSeadragon's event position, relative to its
   * canvas element as the layer is): by its box, since the canvas captures the pointer while pressed. */
  function markerOf(e) {
    if (!state.mapEl || state.mapEl.hidden) return null;
    const { x, y } = e.position;
    const hit = state.markers.find((m) => m.box && x >= m.box.l && x <= m.box.r && y >= m.box.t && y <= m.box.b);
    return hit ? hit.c.index : null;
  }

  function clickMarker(e) {
    const index = markerOf(e);
    if (index === null) return false;
    chooseConcept(state.concept === index ? null : index);
    return true;
  }

  function hoverMarker(e, rect) {
    const index = markerOf(e);
    state.viewer.canvas.style.cursor = index === null ? "" : "pointer";
    state.markers.forEach((m) => m.el.classList.toggle("hover", m.c.index === index));
    if (index === null) return false;
    setHover(null);
    const entry = layerConcepts();
    const c = entry && entry.byIndex.get(index);
    const tooltip = $("tooltip");
    tooltip.textContent = c ? conceptTitle(c) + " · " + pct1(c.frequency) + " of the samples · click to choose" : "";
    tooltip.style.left = rect.left + e.position.x + 14 + "px";
    tooltip.style.top = rect.top + e.position.y + 14 + "px";
    tooltip.hidden = !c;
    return true;
  }

  /* ---------------------------------------------------------------- start */

  async function main() {
    if (typeof OpenSeadragon === "undefined") {
      return fail("openseadragon/openseadragon.min.js did not load; rebuild the viewer (npm ci, then `actlas viewer RUN`)");
    }
    try {
      state.data = await loadData();
    } catch (err) {
      return fail("cannot load the atlas data: " + err.message);
    }
    state.maps = listMaps(state.data);
    if (!state.maps.length) return fail("data.json lists no atlas; rebuild the viewer");
    $("title").textContent = "actlas · " + state.data.title;
    document.title = "actlas · " + state.data.title;
    setupClasses(state.data.classes);
    setupConcepts(state.data.concepts);
    setupLayers();
    const viewer = OpenSeadragon({
      element: $("atlas"),
      prefixUrl: "openseadragon/images/",
      drawer: "canvas",
      showNavigator: true,
      navigatorPosition: "BOTTOM_RIGHT",
      gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
      visibilityRatio: 0.5,
      minZoomImageRatio: 0.5,
      maxZoomPixelRatio: 4,
      animationTime: 0.6,
      imageSmoothingEnabled: true,
    });
    state.viewer = viewer;
    viewer.addHandler("animation", updateGrid);
    viewer.addHandler("resize", () => { setZoomLimit(); updateGrid(); });
    viewer.addHandler("animation-finish", updateGrid);
    setupMouse(viewer);
    setupConceptMap(viewer);
    const first = mapFromHash();
    $("layer").value = String(first);
    openLayer(first);
  }

  main();
})();
