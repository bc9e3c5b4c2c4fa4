"""The viewer in a real browser: Python Playwright driving Debian's chromium, headless.

The acceptance test takes ``small_run`` (tests/conftest.py: a real pipeline run on a few
real photos, at least two grid sizes of one layer). The load-time and layer-switch tests
use a generated run (tests/_fake_atlas.py): they measure and exercise the viewer, not the
atlas. Install the browser with ``apt-get install -y chromium``; never download one.
"""

from __future__ import annotations

import http.server
import json
import shutil
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from _fake_atlas import make_fake_run, write_patch_report

from actlas.serve import export, start_server
from actlas.stages.viewer import viewer as build_viewer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium: apt-get install -y chromium"
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless chromium (Debian's), shared by the module's tests."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page that records console errors, page errors and failed responses."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.problems = []
    pg.on("pageerror", lambda e: pg.problems.append(f"page error: {e}"))
    pg.on("console", lambda m: m.type == "error" and pg.problems.append(f"console: {m.text}"))
    pg.on("response", lambda r: r.status >= 400 and pg.problems.append(f"HTTP {r.status} {r.url}"))
    yield pg
    context.close()


def wait_until(page: Any, js: str, timeout_s: float = 20.0) -> Any:
    """Poll ``js`` in the page until truthy (the viewer's CSP forbids eval, so no wait_for_function)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(js)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for: {js}; problems: {page.problems}")
        page.wait_for_timeout(50)


def copy_atlases(run: Path, dest: Path) -> Path:
    """Copy what the viewer reads from a run (manifest, LAYER/grid-N/) so tests never write into it."""
    dest.mkdir(parents=True)
    if (run / "manifest.json").is_file():
        shutil.copy2(run / "manifest.json", dest / "manifest.json")
    for atlas in run.glob("*/grid-*/atlas.json"):
        shutil.copytree(atlas.parent, dest / atlas.parent.relative_to(run))
    return dest


def grid_shown(page: Any) -> int:
    return int(page.get_attribute("#grid-size", "data-grid"))


def cell_opacities(page: Any) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('.cells .cell')].map(e => e.style.opacity)")


CELL_NEAR_CENTRE = """([wanted, box]) => {
    const keys = wanted && new Set(wanted.map(([i, j]) => i + ',' + j));
    const cx = box.x + box.width / 2, cy = box.y + box.height / 2;
    let best = null;
    for (const el of document.querySelectorAll('.cells .cell:not(.empty)')) {
        if (keys && !keys.has(el.dataset.i + ',' + el.dataset.j)) continue;
        const r = el.getBoundingClientRect();
        const x = r.left + r.width / 2, y = r.top + r.height / 2;
        // stay clear of the zoom buttons (top left) and the navigator (bottom right)
        if (x < box.x + 20 || y < box.y + 60 || x > box.x + box.width * 0.7 || y > box.y + box.height * 0.7) continue;
        const d = (x - cx) ** 2 + (y - cy) ** 2;
        if (!best || d < best.d) best = {d, x, y, i: +el.dataset.i, j: +el.dataset.j};
    }
    return best;
}"""


def cell_near_centre(page: Any, wanted: list[list[int]] | None = None) -> dict[str, float] | None:
    """Screen centre and (i, j) of the occupied cell nearest the atlas centre (among ``wanted``)."""
    box = page.locator("#atlas").bounding_box()
    return page.evaluate(CELL_NEAR_CENTRE, [wanted, box])


def class_key(classes: list[str], k: int) -> str:
    """The name the viewer's search offers for class k (repeated names get their index)."""
    return f"{classes[k]} ({k})" if classes.count(classes[k]) > 1 else classes[k]


@pytest.mark.slow
def test_viewer_on_small_run(small_run: Path, page: Any, tmp_path: Path) -> None:
    """Zoom until the grid changes, hover a cell, click it, highlight a class; save a screenshot."""
    run = copy_atlases(Path(small_run), tmp_path / "run")
    grids = sorted({int(p.parent.name.split("-")[1]) for p in run.glob("*/grid-*/atlas.json")})
    assert len(grids) >= 2, f"small_run must hold at least two grid sizes, has {grids}"
    build_viewer(run)
    with start_server(run) as server:
        page.goto(server.url)
        wait_until(page, "document.body.dataset.ready === '1'")
        start = grid_shown(page)
        assert start == grids[0], "the viewer opens on the coarsest grid"

        # Zoom in with the mouse wheel until a finer grid replaces the first one.
        box = page.locator("#atlas").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        for _ in range(30):
            page.mouse.wheel(0, -150)
            page.wait_for_timeout(150)
            if grid_shown(page) != start:
                break
        page.wait_for_timeout(800)  # let the zoom animation settle
        grid = grid_shown(page)
        assert grid > start, f"zooming in did not switch to a finer grid (still {grid})"

        # Hover the on-screen cell nearest the centre that has dataset examples.
        layer = page.evaluate("window.actlas.maps[window.actlas.layer].layer")
        atlas = json.loads((run / layer / f"grid-{grid}" / "atlas.json").read_text())
        cells = {(c["i"], c["j"]): c for c in atlas["cells"]}
        wanted = [[i, j] for (i, j), c in cells.items() if c.get("examples")]
        assert wanted, "small_run's atlas has no cell with dataset examples"
        target = cell_near_centre(page, wanted)
        assert target, "no cell with examples is on screen after zooming"
        cell = cells[(target["i"], target["j"])]
        page.mouse.move(target["x"], target["y"])
        wait_until(page, "!document.getElementById('tooltip').hidden")
        assert cell["label"] in page.text_content("#tooltip")
        assert page.text_content("#cell-label") == cell["label"]
        meta = page.text_content("#cell-meta")
        assert f"{cell['count']} sample" in meta, meta
        assert page.locator("#cell-top tbody tr").count() == len(cell.get("top", []))

        # Click: the cell's dataset examples load.
        page.mouse.click(target["x"], target["y"])
        loaded = wait_until(
            page,
            "(() => { const imgs = [...document.querySelectorAll('#example-list img')];"
            " return imgs.length && imgs.every(i => i.complete) && imgs.filter(i => i.naturalWidth > 0).length; })()",
        )
        assert loaded >= 1
        captions = page.text_content("#example-list")
        assert f"true: {cell['examples'][0]['label']}" in captions

        # Type a class name: the cells' opacities follow their attribution to it.
        before = cell_opacities(page)
        assert set(before) <= {"0", ""}
        label_index = cell.get("label_index", atlas["classes"].index(cell["label"]))
        search = page.locator("#class-search")
        search.click()
        search.press_sequentially(class_key(atlas["classes"], label_index), delay=10)
        search.press("Enter")
        after = cell_opacities(page)
        assert after != before and len(set(after)) > 1, "class highlight did not change cell opacities"
        assert "highlighting" in page.text_content("#highlight-info")

        page.mouse.move(target["x"], target["y"])  # show the tooltip in the screenshot
        page.wait_for_timeout(400)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "viewer.png"))
        assert not page.problems, page.problems


@pytest.fixture(scope="module")
def fake_run_40(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated run: two layers, each one 40 x 40 atlas of 64 px icons (2560 px square)."""
    run = make_fake_run(
        tmp_path_factory.mktemp("run40") / "run",
        layers=("features.13", "features.16"),
        grids=(40,),
        icon_size=64,
        examples_per_cell=1,
    )
    build_viewer(run)
    return run


def test_viewer_load_time_40x40(fake_run_40: Path, page: Any) -> None:
    """Time from navigation to a 40 x 40 atlas drawn (tiles fully loaded, cells built); printed."""
    with start_server(fake_run_40) as server:
        t0 = time.perf_counter()
        page.goto(server.url)
        wait_until(
            page, "document.body.dataset.ready === '1' && document.querySelectorAll('.cells .cell').length === 1600"
        )
        seconds = time.perf_counter() - t0
        in_page_ms = page.evaluate("window.actlasLoadMs")
        print(f"\nviewer load time, 40x40 atlas (2560 px): {seconds:.2f} s from goto (in page: {in_page_ms:.0f} ms)")
        assert grid_shown(page) == 40
        assert seconds < 20
        assert not page.problems, page.problems


def test_layer_switch(fake_run_40: Path, page: Any) -> None:
    """A run with two layers shows a layer selector; choosing the other layer reopens the atlas."""
    with start_server(fake_run_40) as server:
        page.goto(server.url)
        wait_until(page, "document.body.dataset.ready === '1'")
        assert page.is_visible("#layer")
        page.select_option("#layer", label="features.16")
        wait_until(
            page,
            "window.actlas.layer === 1 && window.actlas.viewer.world.getItemCount() === 1 "
            "&& window.actlas.viewer.world.getItemAt(0).getFullyLoaded()",
        )
        assert page.evaluate("window.actlas.maps[window.actlas.layer].layer") == "features.16"
        assert page.locator(".cells .cell").count() == 1600
        assert not page.problems, page.problems


def test_exported_site_on_plain_file_server(fake_run_40: Path, page: Any, tmp_path: Path) -> None:
    """`export` output works from the standard library's plain static file server."""
    out = tmp_path / "site"
    export(fake_run_40, out)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = partial(Quiet, directory=str(out))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/")  # index.html redirects to viewer/
        page.wait_for_url("**/viewer/index.html")
        wait_until(page, "document.body && document.body.dataset.ready === '1'")
        cell = cell_near_centre(page)
        assert cell, "no occupied cell on screen"
        page.mouse.click(cell["x"], cell["y"])
        wait_until(
            page, "[...document.querySelectorAll('#example-list img')].some(i => i.complete && i.naturalWidth > 0)"
        )
        assert not page.problems, page.problems
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_class_atlas_and_comparison_pages(page: Any, tmp_path: Path) -> None:
    """Class atlases and comparisons are maps of the atlas switch; the URL fragment opens one directly;
    a comparison shows its axis; hover and click work there as on the main atlas."""
    run = make_fake_run(tmp_path / "run", grids=(4, 8), icon_size=32, examples_per_cell=1, extras=True)
    build_viewer(run)
    with start_server(run) as server:
        page.goto(server.url + "viewer/index.html#features.13/class-red-fox")
        wait_until(page, "document.body.dataset.ready === '1'")
        options = page.eval_on_selector_all("#layer option", "els => els.map(e => e.textContent)")
        assert options == ["features.13", "class: red fox", "compare: snorkel vs scuba diver"]
        assert page.evaluate("window.actlas.maps[window.actlas.layer].id") == "features.13/class-red-fox"
        assert grid_shown(page) == 8 and page.locator(".cells .cell").count() == 64
        assert "red fox" in page.text_content("#about") and page.is_hidden("#axis")

        cell = cell_near_centre(page)
        assert cell, "no occupied cell of the class atlas on screen"
        page.mouse.click(cell["x"], cell["y"])
        wait_until(
            page, "[...document.querySelectorAll('#example-list img')].some(i => i.complete && i.naturalWidth > 0)"
        )
        icon = page.get_attribute("#cell-icon", "src")
        assert icon == f"../features.13/class-red-fox/icons/{cell['i']}_{cell['j']}.png"

        page.select_option("#layer", label="compare: snorkel vs scuba diver")
        wait_until(
            page,
            "window.actlas.viewer.world.getItemCount() === 1"
            " && window.actlas.viewer.world.getItemAt(0).getFullyLoaded()"
            " && document.querySelectorAll('.cells .cell').length === 36",
        )
        assert page.evaluate("window.location.hash") == "#features.13/compare-snorkel-scuba-diver"
        assert page.is_visible("#axis")
        assert page.text_content("#axis-left") == "← more scuba diver"
        assert page.text_content("#axis-right") == "more snorkel →"
        assert "attribution to snorkel minus attribution to scuba diver" in page.text_content("#about")

        page.select_option("#layer", label="features.13")
        wait_until(
            page,
            "window.actlas.viewer.world.getItemCount() === 2"
            " && document.querySelectorAll('.cells .cell').length === 16",
        )
        assert page.is_hidden("#axis") and page.is_hidden("#about")
        ARTIFACTS.mkdir(exist_ok=True)
        page.select_option("#layer", label="compare: snorkel vs scuba diver")
        page.wait_for_timeout(600)
        page.screenshot(path=str(ARTIFACTS / "viewer-compare.png"))
        assert not page.problems, page.problems


def test_pinned_cell_links_its_patch_experiments(page: Any, tmp_path: Path) -> None:
    """A pinned cell lists the patch experiments that pasted its icon, with their numbers and links;
    the atlas switch opens each experiment's figure."""
    run = make_fake_run(tmp_path / "run", grids=(4, 8), icon_size=32, examples_per_cell=1, extras=True)
    atlas = json.loads((run / "features.13" / "class-red-fox" / "atlas.json").read_text())
    cells = [(c["i"], c["j"]) for c in atlas["cells"]]
    write_patch_report(run, "snorkel-to-red-fox", "features.13", "class-red-fox", cells)
    build_viewer(run)
    with start_server(run) as server:
        page.goto(server.url + "viewer/index.html#features.13/class-red-fox")
        wait_until(page, "document.body.dataset.ready === '1'")
        options = page.eval_on_selector_all("#layer option", "els => els.map(e => e.textContent)")
        assert options[-1] == "patch: snorkel \u2192 red fox"
        cell = cell_near_centre(page)
        assert cell, "no occupied cell of the class atlas on screen"
        page.mouse.click(cell["x"], cell["y"])
        wait_until(page, "!document.getElementById('patch-tests').hidden")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "viewer-patch-links.png"))
        item = page.text_content("#patch-list li")
        assert "snorkel \u2192 red fox (discovered icon)" in item
        assert "source_correct: static 42.9% [39.2, 46.6] of 700 (best control 5.0%)" in item
        assert "interval above both controls: static yes, dynamic yes" in item
        hrefs = page.eval_on_selector_all("#patch-list a", "els => els.map(e => e.getAttribute('href'))")
        assert hrefs == [
            "../patches/snorkel-to-red-fox/report.md",
            f"../patches/snorkel-to-red-fox/examples-class-red-fox-{cell['i']}-{cell['j']}.png",
        ]
        for href in hrefs:  # both served from the run
            assert page.request.get(server.url + "viewer/" + href).ok
        with page.expect_popup() as popup:
            page.select_option("#layer", label="patch: snorkel \u2192 red fox")
        assert popup.value.url.endswith("/patches/snorkel-to-red-fox/bars.png")
        assert page.evaluate("window.actlas.maps[window.actlas.layer].id") == "features.13/class-red-fox"
        assert page.input_value("#layer") == str(page.evaluate("window.actlas.layer"))
        page.keyboard.press("Escape")
        assert page.is_hidden("#patch-tests")
        assert not page.problems, page.problems


@pytest.mark.slow  # builds a tiny aligned run (~30 s of CPU, most of it the layouts)
def test_aligned_atlases_side_by_side(page: Any, tmp_path: Path) -> None:
    """An alignment of a CNN layer and a ViT layer: both maps side by side, one zoom and pan; hovering a cell
    of one shades where its photos fall on the other; a pinned cell shows both icons and examples."""
    from _aligned_run import make_aligned_run

    run = make_aligned_run(tmp_path)
    build_viewer(run)
    with start_server(run) as server:
        page.goto(server.url + "#aligned/cnn-vit")
        wait_until(page, "document.body.dataset.alignedReady === '1'")
        assert page.locator(".aligned-pane").count() == 2
        assert page.text_content("#aligned-1").strip() == "" and "blocks.1 (vit)" in page.text_content("#aligned")

        # One zoom and pan: wheel over the left map, the right one follows.
        left = page.locator("#aligned-0").bounding_box()
        page.mouse.move(left["x"] + left["width"] * 0.4, left["y"] + left["height"] * 0.45)
        for _ in range(3):
            page.mouse.wheel(0, -120)
            page.wait_for_timeout(120)
        page.wait_for_timeout(900)
        zooms = page.evaluate("window.actlasAligned.views.map(v => v.viewer.viewport.getZoom(true))")
        centres = page.evaluate(
            "window.actlasAligned.views.map(v => { const c = v.viewer.viewport.getCenter(true); return [c.x, c.y]; })"
        )
        home = page.evaluate("window.actlasAligned.views[0].viewer.viewport.getHomeZoom()")
        assert zooms[0] > home * 1.2 and abs(zooms[0] - zooms[1]) < 1e-6 * zooms[0], (zooms, home)
        assert all(abs(a - b) < 1e-6 for a, b in zip(centres[0], centres[1])), centres
        page.evaluate("window.actlasAligned.views.forEach(v => v.viewer.viewport.goHome(true))")
        page.wait_for_timeout(300)

        # Hover a cell of the left map: the right map's partner cells are those its atlas.json lists.
        folder = run / "aligned" / "cnn-vit" / "features.4" / "grid-3"
        cells = json.loads((folder / "atlas.json").read_text())["cells"]
        cell = max(cells, key=lambda c: c["count"])
        left = page.locator("#aligned-0").bounding_box()
        x = left["x"] + (cell["i"] + 0.5) / 3 * left["width"]
        scale = page.evaluate("window.actlasAligned.views[0].viewer.viewport.getContainerSize().x")
        y = left["y"] + left["height"] / 2 + ((cell["j"] + 0.5) / 3 - 0.5) * scale
        page.mouse.move(x, y)
        wait_until(page, "document.querySelectorAll('#aligned-1 .cell.partner').length > 0")
        shaded = page.evaluate(
            "[...document.querySelectorAll('#aligned-1 .cell.partner')].map(e => [+e.dataset.i, +e.dataset.j,"
            " +e.dataset.partner])"
        )
        assert sorted(shaded) == sorted(cell["partners"]["blocks.1@vit"]), (shaded, cell)
        hovered = page.evaluate(
            "[...document.querySelectorAll('#aligned-0 .cell.hover')].map(e => [+e.dataset.i, +e.dataset.j])"
        )
        assert hovered == [[cell["i"], cell["j"]]]
        assert "neighbouring cell of blocks.1 (vit)" in page.text_content("#tooltip")

        # Click: both icons and both sets of examples in the panel.
        page.mouse.click(x, y)
        wait_until(page, "!document.getElementById('aligned-panel').hidden")
        loaded = wait_until(
            page,
            "(() => { const imgs = [...document.querySelectorAll('#aligned-panel img')];"
            " return imgs.length >= 4 && imgs.every(i => i.complete && i.naturalWidth > 0) && imgs.length; })()",
        )
        assert page.locator("#aligned-panel .aligned-icon").count() == 2 and loaded >= 4
        assert page.locator("#aligned-panel .aligned-card h3").all_text_contents() == ["features.4", "blocks.1 (vit)"]
        page.mouse.move(x, y)
        page.wait_for_timeout(300)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "viewer-aligned.png"))

        # Back to the main atlas: the side-by-side view goes away.
        page.select_option("#layer", "0")
        wait_until(page, "!document.body.classList.contains('aligned-mode')")
        assert page.locator(".aligned-pane").count() == 0


def write_concepts_folder(run: Path, layer: str, grids: tuple[int, ...], size: int = 6) -> None:
    """A concepts folder for a fake run: ``size`` concepts with icons and one exemplar each; every
    occupied cell of each grid lists two concepts, concept 0 firing in the cells of the left half."""
    import numpy as np
    from PIL import Image

    from actlas import paths
    from actlas.formats.atlas import Example
    from actlas.formats.concepts import CellConcepts, ConceptRecord, ConceptsMeta, write_concepts

    folder = paths.concepts_dir(run, layer)
    (folder / "icons").mkdir(parents=True)
    (folder / "examples").mkdir()
    records = []
    for j in range(size):
        Image.fromarray(np.full((16, 16, 3), 40 * j, np.uint8)).save(folder / paths.icon_name(j, 0))
        Image.fromarray(np.full((24, 24, 3), 30 * j, np.uint8)).save(folder / paths.example_name(j, 0, 0))
        records.append(
            ConceptRecord(
                index=j,
                frequency=0.5 / (j + 1) if j < size - 1 else 0.0,
                count=100 // (j + 1) if j < size - 1 else 0,
                label="red fox" if j < size - 1 else None,
                label_index=5,
                top=[["red fox", 1.5], ["snorkel", 0.25]],
                centroid=[0.3, 0.4] if j < size - 1 else None,
                faithfulness=0.9,
                icon=paths.icon_name(j, 0),
                examples=[Example(src=paths.example_name(j, 0, 0), label="red fox", pred="red fox", prob=0.9)]
                if j < size - 1
                else [],
            )
        )
    cells = {}
    for n in grids:
        atlas = json.loads((run / layer / f"grid-{n}" / "atlas.json").read_text())
        cells[str(n)] = [
            CellConcepts(
                i=c["i"],
                j=c["j"],
                concepts=[[1, 0.5], [2, 0.25]],
                share=0.75,
                fires=[[0, 0.8], [1, 0.1]] if c["i"] < n // 2 else [[1, 0.3]],
            )
            for c in atlas["cells"]
        ]
    meta = ConceptsMeta(
        layer=layer,
        method="archetypal",
        size=size,
        k=2,
        figures={"r2": 0.8, "l0": 2.0, "dead": 1 / size, "rows": 40},
        concepts=records,
        cells=cells,
    )
    write_concepts(paths.concepts_json(folder), meta)


def test_concepts_list_shades_cells_and_pinned_cell_lists_its_concepts(page: Any, tmp_path: Path) -> None:
    """The concept list shows the live concepts, most frequent first; choosing one shows its icon, classes
    and exemplars and shades the cells where it fires; a pinned cell lists its top concepts."""
    run = make_fake_run(tmp_path / "run", grids=(4, 8), icon_size=32, examples_per_cell=1, extras=True)
    write_concepts_folder(run, "features.13", (4, 8))
    build_viewer(run)
    with start_server(run) as server:
        page.goto(server.url + "viewer/index.html#features.13")
        wait_until(page, "document.body.dataset.ready === '1'")
        assert page.is_visible("#concepts")
        assert "6 concepts (archetypal, k 2) · held-out R² 0.800" in page.text_content("#concept-figures")
        labels = page.eval_on_selector_all("#concept-list button", "els => els.map(e => e.dataset.concept)")
        assert labels == ["0", "1", "2", "3", "4"], "live concepts, most frequent first"
        page.click("#concept-list button[data-concept='0']")
        assert page.is_visible("#concept")
        assert page.get_attribute("#concept-icon", "src") == "../features.13/concepts/icons/0_0.png"
        assert page.text_content("#concept-label") == "concept 0 · red fox"
        assert "active on 50.0% of the samples" in page.text_content("#concept-meta")
        assert page.text_content("#concept-top tbody tr td") == "red fox"
        wait_until(
            page, "[...document.querySelectorAll('#concept-examples img')].some(i => i.complete && i.naturalWidth > 0)"
        )
        n = grid_shown(page)
        weights = page.evaluate(
            "[...document.querySelectorAll('.cells .cell')].map(e => [+e.dataset.i, e.dataset.weight])"
        )
        atlas = json.loads((run / "features.13" / f"grid-{n}" / "atlas.json").read_text())
        occupied = {(c["i"], c["j"]) for c in atlas["cells"]}
        fired = [i for i, w in weights if w == "1.000"]
        assert fired and all(i < n // 2 for i in fired), "concept 0 fires in the left half"
        assert all(w == "0.000" for i, w in weights if i >= n // 2), "and nowhere else"
        assert f"fires in {sum(i < n // 2 for i, _ in occupied)} of {len(occupied)} cells" in page.text_content(
            "#highlight-info"
        )

        cell = cell_near_centre(page)
        assert cell, "no occupied cell on screen"
        page.mouse.click(cell["x"], cell["y"])
        wait_until(page, "!document.getElementById('cell-concepts').hidden")
        items = page.eval_on_selector_all("#cell-concept-list button", "els => els.map(e => e.textContent)")
        assert items == ["concept 1 · red fox · weight 0.500", "concept 2 · red fox · weight 0.250"]
        assert "75.0%" in page.text_content("#cell-concept-share")
        page.click("#cell-concept-list button[data-concept='2']")
        assert page.text_content("#concept-label") == "concept 2 · red fox"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "viewer-concepts.png"))

        page.fill("#class-search", "red fox")  # a class highlight replaces the concept's shading
        page.keyboard.press("Enter")
        assert page.is_hidden("#concept") and "highlighting red fox" in page.text_content("#highlight-info")
        page.select_option("#layer", label="class: red fox")  # concepts belong to the layer's main atlas
        wait_until(page, "document.querySelectorAll('.cells .cell').length === 64")
        assert page.is_hidden("#concepts")
        assert not page.problems, page.problems


def write_concept_map_folder(run: Path, layer: str, grids: tuple[int, ...]) -> list[dict]:
    """A concepts folder whose concepts lie at distinct places of the fake atlas: 14 spread over the occupied
    cells, then 6 packed within 0.01 of one spot (they overlap at the home zoom). Each concept's icon is the
    grid-8 icon under its centroid, its label that cell's; it fires in the cells within 0.15 of its centroid.
    Returns the concepts as written (index, centroid, spread, frequency, label)."""
    import numpy as np

    from actlas import paths
    from actlas.formats.atlas import Example
    from actlas.formats.concepts import CellConcepts, ConceptRecord, ConceptsMeta, write_concepts

    rng = np.random.default_rng(1)
    base = json.loads((run / layer / "grid-8" / "atlas.json").read_text())
    occupied = sorted(base["cells"], key=lambda c: (c["j"], c["i"]))
    picks = [occupied[k] for k in rng.choice(len(occupied), 14, replace=False)]
    spots = [((c["i"] + 0.5) / 8, (c["j"] + 0.5) / 8, c) for c in picks]
    first = spots[0]
    spots += [(first[0] + 0.01 * np.cos(a), first[1] + 0.01 * np.sin(a), first[2]) for a in np.arange(6)]
    folder = paths.concepts_dir(run, layer)
    (folder / "icons").mkdir(parents=True)
    (folder / "examples").mkdir()
    records, out = [], []
    for j, (x, y, cell) in enumerate(spots):
        shutil.copy(run / layer / "grid-8" / cell["icon"], folder / paths.icon_name(j, 0))
        shutil.copy(run / layer / "grid-8" / cell["examples"][0]["src"], folder / paths.example_name(j, 0, 0))
        frequency = round(0.4 / (1 + j), 4)
        records.append(
            ConceptRecord(
                index=j,
                frequency=frequency,
                count=int(1000 * frequency),
                label=cell["label"],
                label_index=cell["label_index"],
                top=[[cell["label"], 1.0]],
                centroid=[round(float(x), 4), round(float(y), 4)],
                spread=0.08,
                faithfulness=0.9,
                icon=paths.icon_name(j, 0),
                examples=[Example(src=paths.example_name(j, 0, 0), label=cell["label"], pred=cell["label"], prob=0.9)],
            )
        )
        out.append({"index": j, "centroid": records[-1].centroid, "frequency": frequency, "label": cell["label"]})
    cells = {}
    for n in grids:
        atlas = json.loads((run / layer / f"grid-{n}" / "atlas.json").read_text())
        cells[str(n)] = []
        for c in atlas["cells"]:
            centre = np.array([(c["i"] + 0.5) / n, (c["j"] + 0.5) / n])
            near = [r.index for r in records if np.linalg.norm(centre - r.centroid) < 0.15]
            cells[str(n)].append(
                CellConcepts(
                    i=c["i"], j=c["j"], concepts=[[k, 0.5] for k in near[:2]], share=0.5, fires=[[k, 0.5] for k in near]
                )
            )
    meta = ConceptsMeta(
        layer=layer,
        method="nmf",
        size=len(records),
        k=4,
        figures={"r2": 0.85, "l0": 4.0, "dead": 0.0, "rows": 100},
        concepts=records,
        cells=cells,
    )
    write_concepts(paths.concepts_json(folder), meta)
    return out


# The shown markers: concept, the centre of its icon on screen, its box (icon and caption) and icon side.
SHOWN_MARKERS = """() => [...document.querySelectorAll('.concept-marker.shown')].map(el => {
    const img = el.querySelector('img').getBoundingClientRect(), box = el.getBoundingClientRect();
    return {index: +el.dataset.concept, x: img.left + img.width / 2, y: img.top + img.height / 2, side: img.width,
            box: [box.left, box.top, box.right, box.bottom], loaded: el.querySelector('img').naturalWidth > 0};
})"""


def _markers_sit_on_their_cells(page: Any, concepts: list[dict]) -> list[dict]:
    """The shown markers, each checked to sit on the atlas cell holding its centroid (the cell overlay's own
    element, so the check does not use the viewer's coordinate code) and to overlap no other."""
    shown = page.evaluate(SHOWN_MARKERS)
    n = grid_shown(page)
    by_index = {c["index"]: c for c in concepts}
    for m in shown:
        x, y = by_index[m["index"]]["centroid"]
        i, j = min(int(x * n), n - 1), min(int(y * n), n - 1)
        r = page.evaluate(
            f'(() => {{ const r = document.querySelector(\'.cells .cell[data-i="{i}"][data-j="{j}"]\')'
            ".getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })()"
        )
        assert r[0] - 1 <= m["x"] <= r[2] + 1 and r[1] - 1 <= m["y"] <= r[3] + 1, (m, (i, j), r)
    for a in shown:
        for b in shown:
            if a["index"] < b["index"]:
                ax0, ay0, ax1, ay1 = a["box"]
                bx0, by0, bx1, by1 = b["box"]
                assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, ("markers overlap", a, b)
    return shown


def test_concept_map_places_icons_on_the_atlas_and_chooses_on_click(page: Any, tmp_path: Path) -> None:
    """The concept map overlays the layer's concepts at their centroids, larger for frequent ones, none
    overlapping: a packed group shows its most frequent member at the home zoom and more of it zoomed in; the
    markers follow zoom and pan; clicking one chooses its concept (as the list does). Served from `export`."""
    run = make_fake_run(tmp_path / "run", grids=(8, 16), icon_size=32, examples_per_cell=1, extras=True)
    concepts = write_concept_map_folder(run, "features.13", (8, 16))
    build_viewer(run)
    out = tmp_path / "site"
    export(run, out)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(out)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/viewer/index.html#features.13")
        wait_until(page, "document.body.dataset.ready === '1'")
        assert page.is_visible("#concept-map-field") and page.locator(".concept-marker").count() == 0
        page.check("#concept-map")
        assert page.locator(".concept-marker").count() == len(concepts)
        wait_until(page, f"(s => s.length && s.every(m => m.loaded))(({SHOWN_MARKERS})())")
        shown = _markers_sit_on_their_cells(page, concepts)
        packed = set(range(14, 20)) | {0}  # concept 0 and the 6 packed around it
        assert 0 in {m["index"] for m in shown}, "the most frequent concept always has room"
        assert len(packed & {m["index"] for m in shown}) == 1, "a packed group shows one marker at the home zoom"
        sides = {m["index"]: m["side"] for m in shown}
        assert sides[0] == max(sides.values()) and sides[0] > min(sides.values()), "frequent concepts are larger"
        info = page.text_content("#concept-map-info")
        assert f"{len(shown)} of {len(concepts)} shown" in info and "zoom in for more" in info

        # Zoom in on the packed group: more of it has room; the markers stay on their cells.
        x, y = concepts[0]["centroid"]
        page.evaluate(
            f"(() => {{ const v = window.actlas.viewer.viewport; v.panTo(new OpenSeadragon.Point({x}, {y}), true);"
            " v.zoomTo(v.getMaxZoom(), null, true); })()"
        )
        wait_until(page, f"({SHOWN_MARKERS})().filter(m => {sorted(packed)}.includes(m.index)).length > 1")
        zoomed = _markers_sit_on_their_cells(page, concepts)
        assert len(packed & {m["index"] for m in zoomed}) > 1
        page.evaluate("window.actlas.viewer.viewport.goHome(true)")
        wait_until(page, f"({SHOWN_MARKERS})().length === {len(shown)}")
        _markers_sit_on_their_cells(page, concepts)

        # Click a marker: its concept is chosen as from the list, its cells shaded, its spread drawn; no cell pinned.
        target = next(m for m in page.evaluate(SHOWN_MARKERS) if m["index"] not in packed)
        page.mouse.click(target["x"], target["y"])
        wait_until(page, "!document.getElementById('concept').hidden")
        c = concepts[target["index"]]
        assert page.text_content("#concept-label") == f"concept {c['index']} · {c['label']}"
        assert page.is_hidden("#cell-pinned") and page.evaluate("window.actlas.pinned") is None
        classes = page.get_attribute(f".concept-marker[data-concept='{c['index']}']", "class").split()
        assert {"shown", "chosen"} <= set(classes)
        assert page.locator(".concept-marker.chosen").count() == 1
        assert page.is_visible(".concept-spread")
        assert "fires in" in page.text_content("#highlight-info")
        assert page.evaluate("[...document.querySelectorAll('.cells .cell')].some(e => e.dataset.weight === '1.000')")
        ARTIFACTS.mkdir(exist_ok=True)
        page.mouse.move(5, 5)
        page.screenshot(path=str(ARTIFACTS / "viewer-concept-map.png"))
        page.mouse.click(target["x"], target["y"])  # a second click lets it go
        wait_until(page, "document.getElementById('concept').hidden")

        page.uncheck("#concept-map")
        assert page.locator(".concept-marker").count() == 0
        page.check("#concept-map")
        page.select_option("#layer", label="class: red fox")  # concepts belong to the layer's main atlas
        wait_until(page, "document.getElementById('concept-map-field').hidden")
        assert page.locator(".concept-marker").count() == 0
        assert not page.problems, page.problems
    finally:
        httpd.shutdown()
        httpd.server_close()
