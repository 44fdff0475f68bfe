"""The step-through page: ``zpaxos trace --format html`` and ``zpaxos sim --format html``.

One self-contained HTML file (no network, no fonts, no scripts from anywhere; it works
from ``file://``): the SVG chart of chart_svg.py inline, and beside it a panel with the
step control -- buttons, the arrow keys, a slider -- and what every node has promised,
accepted and chosen, and every proposer's phase and ballot, after the current step
(steps.py). The current message is drawn thick and outlined, later ones are faded, so
the run unfolds one message at a time.

Accessibility: 16 px text; the current step is also written out in words (a live region
a screen reader announces); the whole chart is in the page as text too (chart_text.py);
colours are never the only difference (the chart's NACKs are dashed, the quorums of a
split have a pattern and a name each). Element ids and ``data-`` attributes are stable
for tests: ``#step-text``, ``#nodes tr[data-node=node1] .promised``,
``#proposers tr[data-proposer="proposer P1"] .phase``, ``#slider``, ``#next``...
"""

from __future__ import annotations

import json
from html import escape

from zpaxos.pictures.chart_svg import render_svg
from zpaxos.pictures.chart_text import render_text
from zpaxos.pictures.chartmodel import Chart
from zpaxos.pictures.logmodel import LogModel
from zpaxos.pictures.steps import steps

CSS = """
:root { --ink: #1a1a1a; --muted: #555; --line: #c9c9c9; --now: #0072B2; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, Arial,
       sans-serif; color: var(--ink); background: #fff; }
header { padding: 12px 20px 4px; }
h1 { font-size: 1.35rem; margin: 0 0 6px; }
.intro { max-width: 75rem; margin: 0 0 8px; }
.layout { display: flex; align-items: flex-start; gap: 16px; padding: 0 12px 12px; }
.chart { flex: 1 1 auto; min-width: 0; overflow-x: auto; border: 1px solid var(--line);
         border-radius: 6px; }
.chart > svg { display: block; max-width: 100%; height: auto; }  /* all of it in view */
aside { flex: 0 0 27rem; position: sticky; top: 8px; max-height: calc(100vh - 16px);
        overflow: auto; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.controls { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
button { font: inherit; padding: 4px 10px; border: 1px solid #777; border-radius: 5px;
         background: #f4f4f4; cursor: pointer; }
button:focus-visible, input:focus-visible { outline: 3px solid var(--now); outline-offset: 2px; }
#slider { width: 100%; margin: 8px 0 2px; }
#step-count { font-weight: 600; }
#step-text { min-height: 3em; margin: 6px 0 10px; padding: 6px 8px; background: #eef5fb;
             border-left: 4px solid var(--now); }
h2 { font-size: 1.02rem; margin: 12px 0 4px; }
table { border-collapse: collapse; width: 100%; font-size: 0.95rem; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #e3e3e3;
         vertical-align: top; }
th { font-weight: 600; color: var(--muted); }
td.changed { background: #fff1c2; font-weight: 600; }
.keys { color: var(--muted); font-size: 0.9rem; margin-top: 10px; }
details { margin: 8px 20px; }
pre { font-size: 13px; overflow: auto; }
svg .future { opacity: 0.15; }
svg .current line { stroke-width: 4.5px; }
svg .current { filter: drop-shadow(0 0 2px #000); }
"""

SCRIPT = """
(function () {
  const data = JSON.parse(document.getElementById('steps-data').textContent);
  const steps = data.steps;
  const charts = Array.from(document.querySelectorAll('svg g.chart'));
  const slider = document.getElementById('slider');
  slider.max = steps.length - 1;
  let current = -1;
  function rows(tbody, attr, entries, cols, before) {
    tbody.textContent = '';
    for (const [name, st] of Object.entries(entries)) {
      const tr = document.createElement('tr');
      tr.setAttribute(attr, name);
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = name;
      tr.appendChild(th);
      for (const c of cols) {
        const td = document.createElement('td');
        td.className = c;
        td.textContent = st[c];
        if (before && before[name] && before[name][c] !== st[c]) td.classList.add('changed');
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
  }
  function show(i) {
    i = Math.max(0, Math.min(steps.length - 1, i));
    const prev = current >= 0 ? steps[current] : null;
    current = i;
    const s = steps[i];
    slider.value = i;
    charts.forEach(function (g, ci) {
      const first = steps.findIndex(x => x.chart === ci);
      const at = steps.filter((x, k) => x.chart === ci && k <= i && x.msg >= 0)
                      .map(x => x.msg);
      const seen = new Set(at);
      const now = s.chart === ci ? s.msg : -2;
      g.querySelectorAll('[data-msg]').forEach(function (el) {
        const m = Number(el.dataset.msg);
        el.classList.toggle('future', !seen.has(m));
        el.classList.toggle('current', m === now);
      });
      const marks = data.charts[ci].markStep;
      g.querySelectorAll('[data-mark]').forEach(function (el) {
        el.classList.toggle('future', marks[Number(el.dataset.mark)] > i || i < first);
      });
    });
    document.getElementById('step-count').textContent =
      'Step ' + i + ' of ' + (steps.length - 1);
    document.getElementById('step-text').textContent = s.text;
    const same = prev && prev.chart === s.chart;
    rows(document.querySelector('#nodes tbody'), 'data-node', s.nodes,
         ['promised', 'accepted', 'chosen', 'status'], same ? prev.nodes : null);
    rows(document.querySelector('#proposers tbody'), 'data-proposer', s.proposers,
         ['phase', 'ballot', 'value', 'votes'], same ? prev.proposers : null);
    // Keep the current arrow in sight: scroll only when it is off the screen.
    const el = charts[s.chart] && charts[s.chart].querySelector('[data-msg="' + s.msg + '"]');
    if (el) {
      const r = el.getBoundingClientRect();
      if (r.bottom > window.innerHeight - 10 || r.top < 10) {
        window.scrollBy(0, r.top - window.innerHeight / 3);
      }
    }
  }
  document.getElementById('first').onclick = () => show(0);
  document.getElementById('prev').onclick = () => show(current - 1);
  document.getElementById('next').onclick = () => show(current + 1);
  document.getElementById('last').onclick = () => show(steps.length - 1);
  slider.oninput = () => show(Number(slider.value));
  document.addEventListener('keydown', function (e) {
    if (e.target === slider || e.altKey || e.ctrlKey || e.metaKey) return;
    const go = {ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1}[e.key];
    if (go) { show(current + go); e.preventDefault(); }
    else if (e.key === 'Home') { show(0); e.preventDefault(); }
    else if (e.key === 'End') { show(steps.length - 1); e.preventDefault(); }
  });
  show(0);
})();
"""


def render_html(charts: list[Chart], source: str, model: LogModel | None,
                title: str = "", intro: str = "") -> str:
    """The page; ``model`` is the log the charts came from (for every process's state)."""
    if model is None:
        raise ValueError("the step-through page needs the log model")
    data = steps(model, charts)
    # In a <script> element "</" would end it early: \\u003c keeps the JSON intact.
    payload = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
    svg = render_svg(charts, source)
    heading = title or f"Paxos step by step: {', '.join(c.key for c in charts)}"
    text = render_text(charts)
    step_list = "".join(f"<li value=\"{i}\">{escape(s['text'])}</li>"
                        for i, s in enumerate(data["steps"]))
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(heading)}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>{escape(heading)}</h1>
{f'<p class="intro">{escape(intro)}</p>' if intro else ''}
<p class="keys">Step with the buttons, the slider, or the arrow keys (Home and End jump to
the first and last step). Each step is one message arriving; the panel shows every node and
proposer after it, changes highlighted. Source: {escape(source)}.</p>
</header>
<main class="layout">
<section class="chart" aria-label="Message sequence chart (text version below)">
{svg}
</section>
<aside aria-label="Step control and state">
<div class="controls" role="group" aria-label="Step control">
<button id="first" type="button" title="First step (Home)">&laquo; First</button>
<button id="prev" type="button" title="Previous step (left arrow)">&#x25C0; Back</button>
<button id="next" type="button" title="Next step (right arrow)">Next &#x25B6;</button>
<button id="last" type="button" title="Last step (End)">Last &raquo;</button>
<span id="step-count" aria-live="off"></span>
</div>
<input id="slider" type="range" min="0" max="0" value="0" aria-label="Step">
<p id="step-text" aria-live="polite"></p>
<h2>Nodes</h2>
<table id="nodes"><thead><tr><th scope="col">node</th><th scope="col">promised</th>
<th scope="col">accepted</th><th scope="col">chosen</th><th scope="col">status</th></tr></thead>
<tbody></tbody></table>
<h2>Proposers</h2>
<table id="proposers"><thead><tr><th scope="col">proposer</th><th scope="col">phase</th>
<th scope="col">ballot</th><th scope="col">value</th><th scope="col">votes</th></tr></thead>
<tbody></tbody></table>
</aside>
</main>
<details><summary>The chart as text</summary><pre>{escape(text)}</pre></details>
<details><summary>Every step in words</summary><ol start="0">{step_list}</ol></details>
<script type="application/json" id="steps-data">{payload}</script>
<script>{SCRIPT}</script>
</body>
</html>
"""
