/* actlas viewer: aligned atlases side by side (config alignments; data.json "aligned", actlas.formats.viewer).
 *
 *   aligned: [{id: "aligned/NAME", name, title, about, maps: [{id, layer, model, title, trust,
 *              grids: [{grid, tile_source, cells: [{i, j, ..., near: {MAP: share}, partners: {MAP: [[i, j, photos]]}}],
 *                       pairs}]}]}]
 *
 * The atlas switch gains one entry per alignment (#aligned/NAME in the URL). Choosing one shows its maps side
 * by side, one OpenSeadragon viewer each, with one zoom and pan: moving any moves all (the maps share the unit
 * square, and an aligned layout puts a photo at about the same place in each). Hovering a cell outlines it and
 * highlights, on every other map, the cells its photos fall in (shaded by their share of the photos); clicking
 * pins it: the panel shows its icon and examples beside those of the cell of each other map that holds most of
 * its photos. viewer.js runs first and owns the page; this script only adds the side-by-side view.
 * Plain script, no build step; all text from the data goes through textContent.
 */
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const A = { list: [], entry: null, views: [], syncing: false, hover: null, pinned: null };
  window.actlasAligned = A;  // for debugging and tests

  function start() {
    const state = window.actlas;
    if (!state || !state.viewer) return setTimeout(start, 30);  // viewer.js has not built its map yet
    A.list = state.data.aligned || [];
    if (!A.list.length) return;
    const select = $("layer");
    const group = document.createElement("optgroup");
    group.label = "aligned atlases (side by side)";
    A.list.forEach((a, k) => {
      const option = document.createElement("option");
      option.value = "aligned:" + k;
      option.textContent = a.title;
      group.appendChild(option);
    });
    select.appendChild(group);
    $("layer-field").hidden = false;
    select.addEventListener("change", () => {
      if (!select.value.startsWith("aligned:")) return close();
      const k = Number(select.value.slice(8));
      open(k);
      history.replaceState(null, "", "#" + A.list[k].id);
    });
    let hash = "";
    try { hash = decodeURIComponent(window.location.hash.slice(1)); } catch (err) { hash = ""; }
    const k = A.list.findIndex((a) => a.id === hash);
    if (k >= 0) { select.value = "aligned:" + k; open(k); }
  }

  /* ---------------------------------------------------------------- open and close */

  function open(k) {
    close();
    const entry = A.list[k];
    A.entry = entry;
    document.body.classList.add("aligned-mode");
    delete document.body.dataset.alignedReady;
    $("about").textContent = entry.about || "";
    $("about").hidden = !entry.about;
    const box = $("aligned");
    box.hidden = false;
    let waiting = entry.maps.length;
    entry.maps.forEach((map, v) => {
      const pane = document.createElement("div");
      pane.className = "aligned-pane";
      const title = document.createElement("div");
      title.className = "aligned-title";
      title.textContent = map.title;
      const el = document.createElement("div");
      el.className = "aligned-atlas";
      el.id = "aligned-" + v;
      pane.append(title, el);
      box.appendChild(pane);
      map.grids.forEach((grid) => { grid.byIndex = new Map(grid.cells.map((c) => [c.j * grid.grid + c.i, c])); });
      const viewer = OpenSeadragon({
        element: el,
        prefixUrl: "openseadragon/images/",
        drawer: "canvas",
        showNavigator: false,
        gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
        visibilityRatio: 0.5,
        minZoomImageRatio: 0.5,
        maxZoomPixelRatio: 4,
        animationTime: 0.6,
      });
      const view = { index: v, map, viewer, items: [], active: -1, cellEls: null, overlay: null };
      A.views.push(view);
      map.grids.forEach((grid, g) => {
        viewer.addTiledImage({
          tileSource: grid.tile_source, x: 0, y: 0, width: 1, index: g, opacity: g === 0 ? 1 : 0,
          success: (event) => {
            view.items[g] = event.item;
            if (g === 0) {
              viewer.viewport.goHome(true);
              const finest = map.grids[map.grids.length - 1].grid;
              viewer.viewport.maxZoomLevel = viewer.viewport.getHomeZoom() * Math.max(4, finest / 2);
              event.item.addOnceHandler("fully-loaded-change", () => {
                waiting -= 1;
                if (waiting === 0) document.body.dataset.alignedReady = "1";
              });
            }
            update(view);
          },
        });
      });
      viewer.addHandler("zoom", () => follow(view));
      viewer.addHandler("pan", () => follow(view));
      viewer.addHandler("animation", () => update(view));
      viewer.addHandler("animation-finish", () => update(view));
      track(view);
    });
  }

  function close() {
    if (!A.entry) return;
    A.views.forEach((view) => view.viewer.destroy());
    A.views = [];
    A.entry = null;
    A.hover = null;
    A.pinned = null;
    $("aligned").textContent = "";
    $("aligned").hidden = true;
    $("aligned-panel").hidden = true;
    document.body.classList.remove("aligned-mode");
    delete document.body.dataset.alignedReady;
  }

  /* One zoom and pan: the view the user moved leads, the others follow to the same target. */
  function follow(source) {
    if (A.syncing) return;
    A.syncing = true;
    const viewport = source.viewer.viewport;
    const zoom = viewport.getZoom(false), centre = viewport.getCenter(false);
    A.views.forEach((view) => {
      if (view === source) return;
      view.viewer.viewport.zoomTo(zoom, null, false);
      view.viewer.viewport.panTo(centre, false);
    });
    A.syncing = false;
  }

  /* ---------------------------------------------------------------- grids and cells */

  function chooseGrid(view) {
    const grids = view.map.grids;
    const viewport = view.viewer.viewport;
    const zoom = viewport.getZoom(true) / viewport.getHomeZoom();
    let chosen = 0;
    for (let g = 1; g < grids.length; g++) {
      if (zoom >= Math.sqrt(grids[g - 1].grid * grids[g].grid) / grids[0].grid) chosen = g;
    }
    return chosen;
  }

  function update(view) {
    if (!view.items[0]) return;
    const g = chooseGrid(view);
    if (g === view.active && view.overlay) return;
    view.active = g;
    view.items.forEach((item, k) => { if (item) item.setOpacity(k <= g ? 1 : 0); });
    const grid = view.map.grids[g];
    const n = grid.grid;
    const wrapper = document.createElement("div");
    wrapper.className = "cells-overlay";
    const el = document.createElement("div");
    el.className = "cells";
    el.dataset.grid = String(n);
    el.style.gridTemplateColumns = "repeat(" + n + ", 1fr)";
    el.style.gridTemplateRows = "repeat(" + n + ", 1fr)";
    wrapper.appendChild(el);
    view.cellEls = [];
    for (let j = 0; j < n; j++) {
      for (let i = 0; i < n; i++) {
        const cellEl = document.createElement("div");
        cellEl.className = grid.byIndex.has(j * n + i) ? "cell" : "cell empty";
        cellEl.dataset.i = String(i);
        cellEl.dataset.j = String(j);
        view.cellEls.push(cellEl);
        el.appendChild(cellEl);
      }
    }
    if (view.overlay) view.viewer.removeOverlay(view.overlay);
    view.viewer.addOverlay({ element: wrapper, location: new OpenSeadragon.Rect(0, 0, 1, 1) });
    view.overlay = wrapper;
    $("grid-size").textContent = "grid " + n + " × " + n;
    $("grid-size").dataset.grid = String(n);
    if (A.hover) mark(A.hover);
  }

  function cellAt(view, pixel) {
    const grid = view.map.grids[view.active];
    if (!grid) return null;
    const p = view.viewer.viewport.pointFromPixel(pixel);
    const n = grid.grid;
    const i = Math.floor(p.x * n), j = Math.floor(p.y * n);
    if (i < 0 || j < 0 || i >= n || j >= n) return null;
    const cell = grid.byIndex.get(j * n + i);
    return cell ? { view, grid, cell, index: j * n + i } : null;
  }

  /* ---------------------------------------------------------------- hover: partners on the other maps */

  function clearMarks() {
    A.views.forEach((view) => (view.cellEls || []).forEach((el) => {
      el.classList.remove("hover", "partner");
      el.style.removeProperty("--share");
      delete el.dataset.partner;
    }));
  }

  /* Outline the hovered cell; on each other map shade the cells its photos fall in by their share. */
  function mark(hit) {
    clearMarks();
    if (!hit || !hit.view.cellEls) return;
    hit.view.cellEls[hit.index].classList.add("hover");
    A.views.forEach((view) => {
      if (view === hit.view || !view.cellEls) return;
      const grid = view.map.grids[view.active];
      if (!grid || grid.grid !== hit.grid.grid) return;  // partners are listed on the grid of the same size
      const partners = (hit.cell.partners || {})[view.map.id] || [];
      const total = partners.reduce((s, p) => s + p[2], 0) || 1;
      partners.forEach(([i, j, photos]) => {
        const el = view.cellEls[j * grid.grid + i];
        if (!el) return;
        el.classList.add("partner");
        el.dataset.partner = String(photos);
        el.style.setProperty("--share", (0.12 + 0.33 * photos / total).toFixed(3));  // the icon stays visible
      });
    });
  }

  function describe(hit) {
    const cell = hit.cell;
    const parts = [hit.view.map.title + " cell (" + cell.i + ", " + cell.j + "): " + cell.label + ", " + cell.count +
      (cell.count === 1 ? " photo" : " photos")];
    A.views.forEach((view) => {
      if (view === hit.view) return;
      const near = (cell.near || {})[view.map.id];
      if (near !== undefined) parts.push(Math.round(100 * near) + "% in the same or a neighbouring cell of " + view.map.title);
    });
    return parts.join("; ");
  }

  function setHover(hit, x, y) {
    A.hover = hit;
    mark(hit || A.pinned);
    const tooltip = $("tooltip");
    if (!hit) { tooltip.hidden = true; return; }
    tooltip.textContent = describe(hit);
    tooltip.style.left = x + 14 + "px";
    tooltip.style.top = y + 14 + "px";
    tooltip.hidden = false;
  }

  /* ---------------------------------------------------------------- pin: both icons and examples */

  function card(view, grid, cell, caption) {
    const box = document.createElement("div");
    box.className = "aligned-card";
    const head = document.createElement("h3");
    head.textContent = view.map.title;
    const note = document.createElement("p");
    note.textContent = caption;
    box.append(head, note);
    if (!cell) return box;
    const icon = document.createElement("img");
    icon.className = "aligned-icon";
    icon.alt = "icon of " + view.map.title + " cell " + cell.i + ", " + cell.j;
    icon.src = cell.icon;
    const label = document.createElement("p");
    label.className = "aligned-label";
    label.textContent = cell.label + " · " + cell.count + (cell.count === 1 ? " photo" : " photos") +
      " · cell (" + cell.i + ", " + cell.j + ") of grid " + grid.grid;
    const examples = document.createElement("div");
    examples.className = "aligned-examples";
    (cell.examples || []).forEach((ex) => {
      const img = document.createElement("img");
      img.src = ex.src;
      img.alt = "dataset example: " + (ex.label || "unknown label");
      img.title = "true: " + (ex.label || "?") + " · predicted: " + (ex.pred || "?");
      examples.appendChild(img);
    });
    box.append(icon, label, examples);
    return box;
  }

  function pin(hit) {
    A.pinned = hit;
    const panel = $("aligned-panel");
    panel.textContent = "";
    if (!hit) { panel.hidden = true; mark(A.hover); return; }
    panel.hidden = false;
    panel.appendChild(card(hit.view, hit.grid, hit.cell, "pinned (Esc to release)"));
    A.views.forEach((view) => {
      if (view === hit.view) return;
      const grid = view.map.grids.find((g) => g.grid === hit.grid.grid);
      const top = ((hit.cell.partners || {})[view.map.id] || [])[0];
      const cell = grid && top ? grid.byIndex.get(top[1] * grid.grid + top[0]) : null;
      const caption = top ? top[2] + " of its " + hit.cell.count + " photos fall in this cell" : "none of its photos";
      panel.appendChild(card(view, grid, cell, caption));
    });
    mark(hit);
  }

  function track(view) {
    new OpenSeadragon.MouseTracker({
      element: view.viewer.canvas,
      moveHandler: (e) => {
        const rect = view.viewer.canvas.getBoundingClientRect();
        setHover(cellAt(view, e.position), rect.left + e.position.x, rect.top + e.position.y);
      },
      leaveHandler: () => setHover(null),
    });
    view.viewer.addHandler("canvas-click", (e) => {
      if (!e.quick) return;  // a drag, not a click
      pin(cellAt(view, e.position));
    });
  }

  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && A.entry) pin(null); });
  start();
})();
