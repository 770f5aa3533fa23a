"""Benchmark: the Streamlit app in a real browser: startup time, server memory, concurrent load.

Targets (issues 5 and 6, 2 CPU cores): first page under 10 s and the demo audit under 30 s
after the demo assets exist; server peak memory under 2 GB, also on 10,000 pairs; no errors
and recorded rerun latencies with 8 concurrent sessions.

Everything runs against ``streamlit run app.py --server.headless true --server.address
127.0.0.1`` on a free port (``tests/support/app_server.py``, shared with the browser
tests), driven by Debian's chromium through playwright (one browser; one browser context
per session). Before anything is timed, the built-in demo data and demo model are prepared
once in ``--cache``/home (``fairvlm demo --if-missing``, ``fairvlm prepare-demo-model``, as
``make run`` does), which is the server's ``FAIRVLM_HOME``; ``--pairs N`` also writes a demo
data set of N pairs to ``--cache`` once.

- **Startup** (default): two server starts, a *cold* one (the on-disk embedding cache emptied,
  so the first audit embeds every pair) and a *warm* one. From the server's spawn: seconds
  until ``/_stcore/health`` answers, until the Data & model page shows its counts table, and,
  after clicking "Audit", until the audit page shows a plotly chart (the page audits the data
  with the default settings). With ``--pairs N`` the N-pair set is loaded through the Data &
  model page (source "Folder or manifest on this server", path, "Load") before the audit.
- **Memory**: the server's peak resident memory, VmHWM of ``/proc/<pid>/status`` (the kernel's
  own high-water mark), plus the peaks of any child processes (sampled every 0.25 s).
- **Load** (``--sessions S --minutes M``): one warm server; S sessions open the Data & model
  page at once, open the Audit page, and keep changing one audit setting (threshold method,
  minimum group size or attribute) and clicking "Run audit" for M minutes, with ``--think``
  seconds (mean) between reruns. A rerun's latency runs from the click of "Run audit" until
  the page is drawn again: no stale element left, every plotly chart has its SVG and none was
  redrawn (``plotly_afterplot``) for 0.5 s. It is split, from the websocket's frames, into the
  click's way through the browser (until the ``rerun_script`` request is sent), the server's
  rerun (until its ``script_finished`` message arrives) and the drawing. Browser and server
  share the machine's cores, so with many sessions the browser's own work shows in the
  latency; the server's CPU use is reported next to it. Errors: Streamlit exception blocks,
  ``st.error`` blocks, browser console errors, uncaught page errors, page crashes, closed
  websockets, reruns that did not finish within ``--rerun-timeout``, and tracebacks in the
  server log.

Results go to ``bench/results/app_load.json`` (one section per scenario, kept across runs) and
``bench/results/app_load.txt``. Threads follow the environment (``OMP_NUM_THREADS``), which is
recorded with each section.

Usage: ``python bench/bench_app_load.py [--pairs 10000] [--sessions 8 --minutes 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright, expect
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "support"))
from app_server import CHROMIUM_ARGS, AppServer, app_server, chromium_path  # noqa: E402

RESULTS_JSON = REPO / "bench" / "results" / "app_load.json"
RESULTS_TEXT = RESULTS_JSON.with_suffix(".txt")
TARGETS = {"first_page_s": 10.0, "audit_chart_s": 30.0, "peak_rss_mib": 2048.0}
PAGE_TIMEOUT_MS = 600_000  # a page that loads or audits a data set
UI_TIMEOUT_MS = 60_000  # any other step (a click, a list opening)
LIST_OPEN_MS = 10_000
LIST_OPEN_ATTEMPTS = 3
VIEWPORT = {"width": 1400, "height": 1000}
SAMPLE_EVERY_S = 0.25
SMALL_FRAME_BYTES = 1024  # control messages (script_finished, new_session) are far smaller
FINISHED_OK = (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR)

COUNTS_HEADING = "Counts per split and group"
CHART = '[data-testid="stPlotlyChart"] .main-svg'
ERROR_BLOCKS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
SETTLED_JS = """() => {
    const charts = document.querySelectorAll('[data-testid="stPlotlyChart"]');
    return document.querySelector('[data-stale="true"]') === null && charts.length > 0
        && [...charts].every(chart => chart.querySelector('.main-svg') !== null);
}"""
PLOT_WATCH_JS = """(() => {
    window.__fairvlmPlotted = 0;
    window.__fairvlmPlots = 0;
    new MutationObserver(() => {
        for (const chart of document.querySelectorAll('.js-plotly-plot')) {
            if (chart.on && !chart.__fairvlmWatched) {
                chart.__fairvlmWatched = true;
                chart.on('plotly_afterplot', () => {
                    window.__fairvlmPlotted = Date.now();
                    window.__fairvlmPlots += 1;
                });
            }
        }
    }).observe(document, {subtree: true, childList: true});
})();"""
PLOTS_JS = "() => [window.__fairvlmPlotted, window.__fairvlmPlots]"
QUIET_S = 0.5  # no chart redrawn for this long: the page is drawn
CHANGES = ("threshold", "min_n", "attribute")


# ---------------------------------------------------------------------------- assets


def fairvlm(arguments: list[str], env: dict[str, str]) -> None:
    """Run ``python -m fairvlm ARGUMENTS`` quietly; exit with its output if it fails."""
    done = subprocess.run([sys.executable, "-m", "fairvlm", *arguments, "--quiet"], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"fairvlm {' '.join(arguments)} failed:\n{done.stdout}{done.stderr}")
    print(f"  {done.stdout.strip()}", flush=True)


def prepare_assets(cache: Path, env: dict[str, str], pairs: int | None,
                   image_size: int) -> Path | None:
    """Prepare the demo data and model (untimed); the folder of the ``pairs``-pair set, if any."""
    print("preparing the demo data and model (once, untimed) ...", flush=True)
    fairvlm(["demo", "--if-missing"], env)
    fairvlm(["prepare-demo-model"], env)
    if pairs is None:
        return None
    folder = cache / f"demo-{pairs}-{image_size}px"
    fairvlm(["demo", "--out", str(folder), "--subjects", str(pairs), "--image-size",
             str(image_size), "--if-missing"], env)
    return folder


# ---------------------------------------------------------------------------- memory


def _proc_fields(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS (KiB) of ``pid``; empty when it has gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {name: int(rest.split()[0]) for name, _, rest in (line.partition(":")
                                                              for line in lines)
            if name in ("VmHWM", "VmRSS")}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (0 when it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from ``/proc/<pid>/task/*/children``)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                queue.extend(int(child) for child in children.read_text().split())
            except OSError:
                continue
    return found


class MemorySampler:
    """Peak memory of a process tree, sampled every :data:`SAMPLE_EVERY_S` in a thread.

    ``peak_kib`` holds each process's VmHWM (its kernel-kept peak, exact for the root; a
    child's is known up to its last sample), ``peak_total_rss_kib`` the largest sampled sum of
    the tree's VmRSS.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib: dict[int, int] = {}
        self.peak_total_rss_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        total = 0
        for pid in process_tree(self.pid):
            values = _proc_fields(pid)
            if values:
                self.peak_kib[pid] = max(self.peak_kib.get(pid, 0), values["VmHWM"])
                total += values["VmRSS"]
        self.peak_total_rss_kib = max(self.peak_total_rss_kib, total)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.sample()

    def summary(self) -> dict[str, float]:
        """Peaks so far, in MiB: the server, its children (sum of their peaks), the tree."""
        self.sample()
        server = self.peak_kib.get(self.pid, 0)
        children = sum(peak for pid, peak in self.peak_kib.items() if pid != self.pid)
        return {"server_peak_rss_mib": round(server / 1024, 1),
                "children_peak_rss_mib": round(children / 1024, 1),
                "children_seen": len(self.peak_kib) - 1,
                "tree_peak_sampled_rss_mib": round(self.peak_total_rss_kib / 1024, 1)}

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the live processes of the tree."""
        return sum(_cpu_seconds(pid) for pid in process_tree(self.pid))

    @contextmanager
    def running(self) -> Iterator[MemorySampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


# ---------------------------------------------------------------------------- one session


@dataclass
class Session:
    """One browser page on the app, with what its websocket and console reported."""

    page: Page
    name: str
    finished: list[tuple[float, int]] = field(default_factory=list)
    requested: list[float] = field(default_factory=list)
    list_retries: int = 0
    errors: list[str] = field(default_factory=list)

    @classmethod
    async def open(cls, browser: Browser, name: str) -> Session:
        """A fresh browser context and page that record errors and finished script runs."""
        context = await browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(UI_TIMEOUT_MS)
        await context.add_init_script(PLOT_WATCH_JS)
        session = cls(await context.new_page(), name)
        page = session.page
        page.on("console", lambda message: session.errors.append(f"console: {message.text}")
                if message.type == "error" else None)
        page.on("pageerror", lambda error: session.errors.append(f"page error: {error}"))
        page.on("crash", lambda _: session.errors.append("page crashed"))
        page.on("websocket", session._watch)
        return session

    def _watch(self, websocket) -> None:
        websocket.on("framereceived", self._frame)
        websocket.on("framesent", self._sent)
        websocket.on("close", lambda _: self.errors.append(f"websocket closed: {websocket.url}"))

    def _frame(self, payload: str | bytes) -> None:
        """Record the arrival time and status of every ``script_finished`` message."""
        if isinstance(payload, str) or len(payload) > SMALL_FRAME_BYTES:
            return
        message = ForwardMsg.FromString(payload)
        if message.WhichOneof("type") == "script_finished":
            self.finished.append((time.monotonic(), message.script_finished))

    def _sent(self, payload: str | bytes) -> None:
        """Record the departure time of every rerun request."""
        if isinstance(payload, bytes) and \
                BackMsg.FromString(payload).WhichOneof("type") == "rerun_script":
            self.requested.append(time.monotonic())

    async def until_finished(self, seen: int, timeout_s: float) -> float:
        """The arrival time of the first completed script run after the ``seen`` first ones.

        Raises
        ------
        TimeoutError
            If none arrives within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for arrived, status in self.finished[seen:]:
                if status in FINISHED_OK:
                    if status != ForwardMsg.FINISHED_SUCCESSFULLY:
                        self.errors.append("script finished with a compile error")
                    return arrived
            await asyncio.sleep(0.02)
        raise TimeoutError(f"{self.name}: no finished script run within {timeout_s:.0f} s")

    async def settled(self) -> float:
        """Wait until the page is drawn; the time it was.

        Drawn: no element is stale, every plotly chart has its SVG, and no chart has been
        redrawn (plotly's ``plotly_afterplot`` event) for :data:`QUIET_S`; the time is that of
        the last of these, the last redraw taken from the page's clock.
        """
        await self.page.wait_for_function(SETTLED_JS, polling=50, timeout=PAGE_TIMEOUT_MS)
        settled = time.monotonic()
        seen = await self.page.evaluate(PLOTS_JS)
        while True:
            await asyncio.sleep(QUIET_S)
            now = await self.page.evaluate(PLOTS_JS)
            if now == seen:
                break
            seen = now
        last_plot = seen[0] / 1000 - (time.time() - time.monotonic())
        return max(settled, last_plot)

    async def error_blocks(self) -> list[str]:
        """The text of every exception or ``st.error`` block on the page."""
        return [f"on page: {text[:300]}"
                for text in await self.page.locator(ERROR_BLOCKS).all_inner_texts()]

    async def close(self) -> None:
        await self.page.context.close()


async def open_first_page(session: Session, url: str) -> float:
    """Open the app; the time the Data & model page shows its counts table."""
    await session.page.goto(url, wait_until="commit")
    await session.page.get_by_role("heading", name=COUNTS_HEADING).wait_for(
        timeout=PAGE_TIMEOUT_MS)
    return time.monotonic()


async def load_folder(session: Session, folder: Path, pairs: int) -> None:
    """Make the data set in ``folder`` the one in use, through the Data & model page."""
    page = session.page
    seen = len(session.finished)
    await page.get_by_text("Folder or manifest on this server").click()
    await session.until_finished(seen, PAGE_TIMEOUT_MS / 1000)
    path = page.get_by_role("textbox", name="Path", exact=True)
    await path.fill(str(folder))
    await path.press("Tab")
    load = page.get_by_role("button", name="Load", exact=True)
    await expect(load).to_be_enabled(timeout=PAGE_TIMEOUT_MS)
    await load.click()
    await page.get_by_text(f"{pairs:,} pairs.").wait_for(timeout=PAGE_TIMEOUT_MS)
    await page.get_by_role("heading", name=COUNTS_HEADING).wait_for(timeout=PAGE_TIMEOUT_MS)


async def open_audit(session: Session) -> float:
    """Click "Audit" in the navigation; the time its first plotly chart shows."""
    page = session.page
    await page.get_by_role("link", name="Audit").click()
    await page.get_by_role("heading", name="Audit", exact=True).wait_for(timeout=PAGE_TIMEOUT_MS)
    await page.locator(CHART).first.wait_for(timeout=PAGE_TIMEOUT_MS)
    return time.monotonic()


async def _choose(session: Session, combobox: str, rng: random.Random,
                  current: set[str]) -> str:
    """Open ``combobox`` and pick one of its options not in ``current``.

    A click that does not open the list is repeated, up to :data:`LIST_OPEN_ATTEMPTS` clicks,
    and counted in ``session.list_retries``.

    Raises
    ------
    TimeoutError
        If the list did not open.
    """
    page = session.page
    listed = page.get_by_role("listbox").get_by_role("option")
    for _ in range(LIST_OPEN_ATTEMPTS):
        await page.get_by_role("combobox", name=combobox, exact=True).click()
        try:
            await listed.first.wait_for(timeout=LIST_OPEN_MS)
            break
        except PlaywrightTimeoutError:
            session.list_retries += 1
    else:
        raise TimeoutError(f"the {combobox} list did not open after {LIST_OPEN_ATTEMPTS} "
                           "clicks")
    options = [text for text in await listed.all_inner_texts()
               if text not in current and text != "Select all"]
    choice = rng.choice(options)
    await page.get_by_role("option", name=choice, exact=True).click()
    await page.keyboard.press("Escape")
    return choice


async def change_setting(session: Session, kind: str, rng: random.Random) -> str:
    """Change one setting of the audit form (not yet submitted); the new value."""
    page = session.page
    if kind == "threshold":
        current = await page.get_by_role("combobox", name="Threshold", exact=True).input_value()
        return await _choose(session, "Threshold", rng, {current})
    if kind == "min_n":
        field_ = page.get_by_role("spinbutton", name="Minimum group size", exact=True)
        value = str(rng.randint(5, 80))
        await field_.fill(value)
        await field_.press("Tab")
        return value
    chips = page.locator('[data-testid="stMultiSelect"] [data-tag]')
    current = {await chip.get_attribute("aria-label") for chip in await chips.all()}
    for name in current:
        await page.get_by_role("button", name=f"Remove {name}", exact=True).click()
    return await _choose(session, "Attribute", rng, current)


async def run_audit(session: Session, timeout_s: float) -> dict[str, float]:
    """Click "Run audit"; seconds from the click until drawn (``drawn_s``), split in the
    click's way through the browser (``request_s``: until the rerun request left it), the
    server's rerun (``server_s``: until its ``script_finished`` arrived) and the drawing."""
    seen, asked = len(session.finished), len(session.requested)
    start = time.monotonic()
    await session.page.get_by_role("button", name="Run audit").click()
    finished = await session.until_finished(seen, timeout_s)
    drawn = await session.settled()
    requested = session.requested[asked] if len(session.requested) > asked else start
    return {"request_s": round(requested - start, 3), "server_s": round(finished - requested, 3),
            "drawn_s": round(drawn - start, 3)}


# ---------------------------------------------------------------------------- scenarios


@contextmanager
def served(env: dict[str, str], log: Path) -> Iterator[tuple[AppServer, MemorySampler]]:
    """The app server and a memory sampler on it."""
    with app_server(env, log, timeout_s=120) as server, \
            MemorySampler(server.process.pid).running() as sampler:
        yield server, sampler


async def startup(browser: Browser, env: dict[str, str], home: Path, folder: Path | None,
                  pairs: int | None, *, cold: bool) -> dict:
    """One server start, timed from its spawn: health, first page, (data set), audit chart."""
    if cold:
        from fairvlm import paths

        shutil.rmtree(paths.cache_dir(), ignore_errors=True)
    log = home / f"streamlit-startup-{'cold' if cold else 'warm'}.log"
    with served(env, log) as (server, sampler):
        session = await Session.open(browser, "startup")
        result: dict = {"embedding_cache": "cold" if cold else "warm",
                        "health_s": round(server.healthy_after_s, 2)}
        result["first_page_s"] = round(await open_first_page(session, server.url)
                                       - server.started, 2)
        if folder is not None and pairs is not None:
            start = time.monotonic()
            await load_folder(session, folder, pairs)
            result["load_data_set_s"] = round(time.monotonic() - start, 2)
        clicked = time.monotonic()
        charted = await open_audit(session)
        result["audit_chart_s"] = round(charted - server.started, 2)
        result["audit_chart_after_click_s"] = round(charted - clicked, 2)
        await session.settled()
        result["memory"] = sampler.summary()
        result["server_cpu_s"] = round(sampler.cpu_seconds(), 1)
        result["errors"] = session.errors + await session.error_blocks() + _tracebacks(log)
        await session.close()
    return result


async def load(browser: Browser, env: dict[str, str], home: Path, folder: Path | None,
               pairs: int | None, args: argparse.Namespace) -> dict:
    """``args.sessions`` concurrent sessions changing audit settings for ``args.minutes``."""
    log = home / "streamlit-load.log"
    with served(env, log) as (server, sampler):
        warm = await Session.open(browser, "warm-up")  # untimed: fills the embedding cache
        await open_first_page(warm, server.url)
        if folder is not None and pairs is not None:
            await load_folder(warm, folder, pairs)
        await open_audit(warm)
        await warm.close()
        cpu_before, load_before = sampler.cpu_seconds(), os.getloadavg()
        start = time.monotonic()
        deadline = start + args.minutes * 60
        outcomes = await asyncio.gather(*(
            _user(browser, server.url, index, deadline, folder, pairs, args)
            for index in range(args.sessions)))
        elapsed = time.monotonic() - start
        server_errors = _tracebacks(log)
        reruns = [rerun for outcome in outcomes for rerun in outcome["reruns"]]
        return {
            "sessions": args.sessions, "minutes": args.minutes, "think_s": args.think,
            "elapsed_s": round(elapsed, 1),
            "first_audit_s": _spread([o["first_audit_s"] for o in outcomes
                                      if o["first_audit_s"] is not None]),
            "reruns": len(reruns),
            **{name: _spread([r[name] for r in reruns])
               for name in ("drawn_s", "request_s", "server_s")},
            "drawn_s_by_change": {kind: _spread([r["drawn_s"] for r in reruns
                                                 if r["change"] == kind]) for kind in CHANGES},
            "errors": [error for outcome in outcomes for error in outcome["errors"]]
            + server_errors,
            "list_retries": sum(outcome["list_retries"] for outcome in outcomes),
            "memory": sampler.summary(),
            "server_cpu_share": round((sampler.cpu_seconds() - cpu_before) / elapsed, 2),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "rerun_log": reruns,
        }


async def _user(browser: Browser, url: str, index: int, deadline: float, folder: Path | None,
                pairs: int | None, args: argparse.Namespace) -> dict:
    """One simulated user: open the demo and the audit, then change settings until
    ``deadline``."""
    rng = random.Random(index)
    session = await Session.open(browser, f"session-{index}")
    reruns: list[dict] = []
    first_audit = None
    try:
        start = time.monotonic()
        await open_first_page(session, url)
        if folder is not None and pairs is not None:
            await load_folder(session, folder, pairs)
        await open_audit(session)
        await session.settled()
        first_audit = round(time.monotonic() - start, 2)
        step = rng.randrange(len(CHANGES))
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(0.5, 1.5) * args.think)
            kind = CHANGES[step % len(CHANGES)]
            step += 1
            value = await change_setting(session, kind, rng)
            reruns.append({"session": index, "change": kind, "value": value,
                           **await run_audit(session, args.rerun_timeout)})
            session.errors.extend(await session.error_blocks())
    except (PlaywrightError, TimeoutError) as error:
        shot = await _screenshot(session, args.cache / "failures")
        session.errors.append(f"{type(error).__name__}: {str(error).splitlines()[0]} ({shot})")
    finally:
        errors = [f"{session.name}: {error}" for error in session.errors]
        await session.close()
    return {"first_audit_s": first_audit, "reruns": reruns, "errors": errors,
            "list_retries": session.list_retries}


async def _screenshot(session: Session, folder: Path) -> str:
    """Save the page as ``folder/<session name>.png``; says where, or why not."""
    target = folder / f"{session.name}.png"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        await session.page.screenshot(path=target, full_page=True)
    except PlaywrightError as error:
        return f"no screenshot: {str(error).splitlines()[0]}"
    return f"screenshot {target}"


def _tracebacks(log: Path) -> list[str]:
    """One entry per traceback the server printed."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return [f"server log: {block.splitlines()[-1] if block.strip() else 'traceback'}"
            for block in text.split("Traceback (most recent call last):")[1:]]


def _spread(values: list[float]) -> dict[str, float | int | None]:
    """n, median, 95th percentile and maximum of ``values`` (``None`` when empty)."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    p95 = statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 \
        else values[0]
    return {"n": len(values), "p50": round(statistics.median(values), 3),
            "p95": round(p95, 3), "max": round(max(values), 3)}


# ---------------------------------------------------------------------------- report


def _context(pairs: int | None) -> dict:
    import streamlit

    return {"pairs": pairs, "data": f"demo set of {pairs:,} pairs" if pairs else "built-in demo",
            "cpu_count": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
            "streamlit": streamlit.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "targets": TARGETS}


def save(key: str, section: dict) -> dict:
    """Store ``section`` under ``key`` in the results file (other keys kept); all results."""
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    results[key] = section
    RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n")
    RESULTS_TEXT.write_text("".join(render(name, results[name]) + "\n"
                                    for name in sorted(results)))
    return results


def _verdict(value: float | None, target: float, unit: str = "s") -> str:
    if value is None:
        return ""
    return f"  ({'under' if value < target else 'OVER'} the {target:g} {unit} target)"


def render(key: str, section: dict) -> str:
    """The lines of one scenario's results."""
    demo = section["context"]["pairs"] is None

    def audit_verdict(seconds: float) -> str:  # the target is for the built-in demo
        return _verdict(seconds, TARGETS["audit_chart_s"]) if demo else ""

    lines = [f"{key}  [{section['context']['date']}, {section['context']['cpu_count']} cores, "
             f"OMP_NUM_THREADS={section['context']['omp_num_threads']}]"]
    for run in section.get("startup", []):
        memory = run["memory"]
        lines += [
            f"  {run['embedding_cache']} start: health {run['health_s']} s, first page "
            f"{run['first_page_s']} s{_verdict(run['first_page_s'], TARGETS['first_page_s'])}",
            *([f"    data set loaded through the UI in {run['load_data_set_s']} s"]
              if "load_data_set_s" in run else []),
            f"    audit chart {run['audit_chart_s']} s ({run['audit_chart_after_click_s']} s "
            f"after the click){audit_verdict(run['audit_chart_s'])}",
            f"    server peak RSS {memory['server_peak_rss_mib']} MiB"
            f"{_verdict(memory['server_peak_rss_mib'], TARGETS['peak_rss_mib'], 'MiB')}, children "
            f"{memory['children_peak_rss_mib']} MiB ({memory['children_seen']} seen); server "
            f"CPU {run['server_cpu_s']} s; errors: {len(run['errors'])}",
        ]
    if "load" in section:
        run = section["load"]
        drawn, request, server = run["drawn_s"], run["request_s"], run["server_s"]
        memory = run["memory"]
        lines += [
            f"  load: {run['sessions']} sessions x {run['minutes']} min (think "
            f"{run['think_s']} s): {run['reruns']} reruns in {run['elapsed_s']} s; errors: "
            f"{len(run['errors'])}; clicks repeated to open a list: {run['list_retries']}",
            f"    first audit per session p50 {run['first_audit_s']['p50']} s, max "
            f"{run['first_audit_s']['max']} s",
            f"    rerun, click to drawn: p50 {drawn['p50']} s, p95 {drawn['p95']} s, max "
            f"{drawn['max']} s",
            f"      of which click to request sent p50 {request['p50']} s, p95 "
            f"{request['p95']} s; request to script finished p50 {server['p50']} s, p95 "
            f"{server['p95']} s",
            *(f"      {kind}: n {spread['n']}, p50 {spread['p50']} s, p95 {spread['p95']} s"
              for kind, spread in run["drawn_s_by_change"].items()),
            f"    server peak RSS {memory['server_peak_rss_mib']} MiB"
            f"{_verdict(memory['server_peak_rss_mib'], TARGETS['peak_rss_mib'], 'MiB')}; "
            f"server CPU {run['server_cpu_share']} cores on average; load average "
            f"{run['loadavg_before'][0]} -> {run['loadavg_after'][0]}",
        ]
    errors = [e for run in section.get("startup", []) for e in run["errors"]] + \
        section.get("load", {}).get("errors", [])
    lines += [f"    error: {error}" for error in errors[:20]]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main


async def bench(args: argparse.Namespace, env: dict[str, str], home: Path,
                folder: Path | None, report: Callable[[str, dict], None]) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(),
                                                   headless=True, args=list(CHROMIUM_ARGS))
        try:
            if args.sessions:
                section = {"context": _context(args.pairs),
                           "load": await load(browser, env, home, folder, args.pairs, args)}
                report(f"load-{args.sessions}-sessions"
                       + (f"-{args.pairs}-pairs" if args.pairs else "-demo"), section)
                return
            runs = []
            for cold in (True, False):
                runs.append(await startup(browser, env, home, folder, args.pairs, cold=cold))
            key = f"startup-{args.pairs}-pairs" if args.pairs else "startup-demo"
            report(key, {"context": _context(args.pairs), "startup": runs})
        finally:
            await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=None,
                        help="use a demo data set of this many pairs instead of the built-in "
                        "demo (loaded through the Data & model page)")
    parser.add_argument("--image-size", type=int, default=64,
                        help="image size of the --pairs data set (default: %(default)s px)")
    parser.add_argument("--sessions", type=int, default=0,
                        help="run the load test with this many concurrent sessions")
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the load test")
    parser.add_argument("--think", type=float, default=1.0,
                        help="mean pause between a session's reruns (default: %(default)s s)")
    parser.add_argument("--rerun-timeout", type=float, default=300.0,
                        help="seconds a rerun may take before it counts as an error")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/fairvlm-bench-load"))
    args = parser.parse_args()
    home = args.cache.resolve() / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {"FAIRVLM_HOME": str(home), "FAIRVLM_DATA_ROOTS": str(args.cache.resolve())}
    os.environ.update(env)  # fairvlm.paths in this process names the server's folders
    folder = prepare_assets(args.cache.resolve(), env, args.pairs, args.image_size)

    def report(key: str, section: dict) -> None:
        save(key, section)
        print(render(key, section), flush=True)

    asyncio.run(bench(args, env, home, folder, report))


if __name__ == "__main__":
    main()
