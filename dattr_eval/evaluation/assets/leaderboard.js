// dattr_eval leaderboard page: renders the embedded leaderboard.json document (no dependencies).
// Views: "overview" (average ranks) and one tab per benchmark (scores, ranks, sanity checks).
// Sorting: click a header (first click = best first); references stay below the methods.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("leaderboard-data").textContent);
  const IMAGES = JSON.parse(document.getElementById("leaderboard-images").textContent);
  const LEVEL = Math.round(DATA.meta.level * 100);
  const OVERVIEW = "__overview__";
  const state = { tab: OVERVIEW, sortKey: null, sortDir: 1, filter: "", showRefs: true };

  const cells = new Map(DATA.cells.map((c) => [key(c.benchmark, c.metric, c.explainer), c]));
  const columns = new Map(DATA.columns.map((c) => [c.id, c]));

  function key(...parts) { return parts.join("\u0000"); }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "className") node.className = value;
      else if (name === "onclick") node.addEventListener("click", value);
      else node.setAttribute(name, value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  // Python's "{:.3g}" (and "{:.2e}" for tiny values), "–" for missing values.
  function fmt(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    if (typeof value !== "number") return String(value);
    if (!Number.isFinite(value)) return "∞";
    const abs = Math.abs(value);
    if (Number.isInteger(value) && abs < 1e6) return String(value);
    if (abs !== 0 && (abs < 1e-3 || abs >= 1e5)) return value.toExponential(2);
    return String(Number(value.toPrecision(3)));
  }

  function interval(low, high) {
    return low === null || low === undefined ? "" : ` [${fmt(low)}, ${fmt(high)}]`;
  }

  // A horizontal whisker: the interval [low, high] and the point on the column's scale.
  function whisker(point, low, high, scale) {
    if (low === null || low === undefined || !scale || scale.max <= scale.min) return null;
    const pos = (v) => (100 * (v - scale.min)) / (scale.max - scale.min);
    return el("div", { className: "whisker", "aria-hidden": "true" },
      el("span", { className: "axis" }),
      el("span", { className: "ci", style: `left:${pos(low)}%;width:${Math.max(0.8, pos(high) - pos(low))}%` }),
      el("span", { className: "pt", style: `left:${pos(point)}%` }));
  }

  function scaleOf(triples) {
    const values = triples.flat().filter((v) => v !== null && v !== undefined && Number.isFinite(v));
    return values.length ? { min: Math.min(...values), max: Math.max(...values) } : null;
  }

  // ------------------------------------------------------------------ column definitions
  function nameColumn() {
    return {
      key: "explainer", label: "explainer", sub: "", title: "explainer (click to sort by name)",
      sortValue: (e) => e.name.toLowerCase(),
      render: (e) => [e.name, e.role === "reference" ? el("span", { className: "badge", text: "reference" }) : null],
    };
  }

  function rankColumn(keyName, label, sub, get) {
    const scale = scaleOf(DATA.explainers.map((e) => [get(e).low, get(e).high, get(e).value]));
    return {
      key: keyName, label, sub, title: "average rank over the ranked metrics (1 = best)",
      sortValue: (e) => get(e).value,
      best: (e) => get(e).best === true,
      render: (e) => {
        const r = get(e);
        const text = e.role === "reference" ? `(${fmt(r.value)})` : fmt(r.value);
        return [
          el("div", {}, text, el("span", { className: "pm", text: interval(r.low, r.high) }),
            r.tied ? el("span", { className: "tie", title: "not significantly better than the next-ranked method", text: " ≈" }) : null),
          whisker(r.value, r.low, r.high, scale),
        ];
      },
    };
  }

  function numberColumn(keyName, label, sub, get, title) {
    return { key: keyName, label, sub, title, sortValue: get, render: (e) => fmt(get(e)) };
  }

  function scoreColumn(col) {
    const meta = DATA.metrics[col.metric] || {};
    const get = (e) => cells.get(key(col.benchmark, col.metric, e.name));
    const scale = scaleOf(DATA.explainers.map((e) => {
      const c = get(e);
      return c && c.status === "ok" ? [c.ci_low, c.ci_high, c.score] : [];
    }));
    const subs = [col.higher_is_better ? "↑ higher is better" : "↓ lower is better"];
    if (col.snr !== null) subs.push(`SNR ${fmt(col.snr)}${col.snr_flagged ? " ⚠" : ""}`);
    if (col.noise_ceiling !== null) subs.push(`ceiling ${fmt(col.noise_ceiling)}`);
    return {
      key: col.id, label: col.metric, sub: subs.join(" · "), flagged: col.snr_flagged,
      info: col.metric, title: meta.summary || col.metric, groupStart: false,
      sortValue: (e) => {
        const c = get(e);
        if (!c || c.status !== "ok" || c.score === null) return null;
        return col.higher_is_better ? -c.score : c.score;
      },
      best: (e) => { const c = get(e); return !!c && c.best_group === true; },
      render: (e) => {
        const c = get(e);
        if (!c) return "";
        if (c.status !== "ok") {
          const label = c.status === "not_applicable" ? "n/a" : c.status;
          return el("span", { className: "status", title: c.error || c.status, text: label });
        }
        const rank = c.rank === null ? "" : (e.role === "reference" ? `(#${fmt(c.rank)})` : `#${fmt(c.rank)}`);
        const rankInterval = c.rank_low === null ? "" : ` [${fmt(c.rank_low)}–${fmt(c.rank_high)}]`;
        const tips = [];
        if (c.ci_low !== null) tips.push(`${LEVEL} % CI [${fmt(c.ci_low)}, ${fmt(c.ci_high)}]`);
        if (c.n_scored !== null) tips.push(`n = ${fmt(c.n_scored)} ${col.unit}s`);
        if (c.baseline_score !== null) tips.push(`random-selection baseline ${fmt(c.baseline_score)}${interval(c.baseline_ci_low, c.baseline_ci_high)}`);
        return [
          el("div", { title: tips.join("\n") || null }, fmt(c.score),
            c.half_width !== null ? el("span", { className: "pm", text: ` ± ${fmt(c.half_width)}` }) : null),
          whisker(c.score, c.ci_low, c.ci_high, scale),
          el("div", { className: "rank" }, rank + rankInterval,
            c.tied_with_next ? el("span", { className: "tie", title: "not significantly better than the next-ranked method", text: " ≈" }) : null),
        ];
      },
    };
  }

  function sanityColumn(col) {
    const get = (e) => cells.get(key(col.benchmark, col.metric, e.name));
    return {
      key: col.id, label: col.metric, sub: "sanity check · not ranked", info: col.metric,
      title: (DATA.metrics[col.metric] || {}).summary || col.metric,
      sortValue: (e) => {
        const c = get(e);
        if (!c || c.status !== "ok") return null;
        return c.passed === true ? 0 : c.passed === false ? 1 : 0.5;
      },
      render: (e) => {
        const c = get(e);
        if (!c) return "";
        if (c.status !== "ok") return el("span", { className: "status", title: c.error || c.status, text: c.status === "not_applicable" ? "n/a" : c.status });
        const mark = c.passed === true ? el("span", { className: "pass", text: "✓ pass" })
          : c.passed === false ? el("span", { className: "fail", text: "✗ fail" }) : "";
        return [mark, el("div", { className: "rank", text: fmt(c.score) })];
      },
    };
  }

  function viewColumns(tab) {
    if (tab === OVERVIEW) {
      const cols = [nameColumn(), rankColumn("avg_rank", "avg rank", `all benchmarks · ${LEVEL} % interval`, (e) => ({
        value: e.avg_rank, low: e.avg_rank_low, high: e.avg_rank_high, best: e.best_group, tied: e.tied_with_next,
      }))];
      for (const b of DATA.benchmarks) {
        if (!b.columns.some((id) => columns.get(id).ranked)) continue;
        cols.push(numberColumn(`avg_rank:${b.name}`, b.name, "avg rank", (e) => e.avg_rank_by_benchmark[b.name], `average rank on ${b.name}`));
      }
      cols.push(numberColumn("runtime_s", "runtime [s]", "fit + explain + self-influence", (e) => e.runtime_s, "seconds summed over benchmarks"));
      cols.push(numberColumn("explain_ms", "explain", "ms / sample", (e) => e.explain_ms_per_sample, "explain milliseconds per test sample"));
      cols.push(numberColumn("rss", "peak RSS +", "MiB", (e) => e.peak_rss_increase_mb, "largest RSS increase during a cell"));
      if (DATA.explainers.some((e) => e.cuda_peak_mb !== null)) {
        cols.push(numberColumn("cuda", "CUDA peak", "MiB", (e) => e.cuda_peak_mb, "torch.cuda.max_memory_allocated"));
      }
      return cols;
    }
    const bench = DATA.benchmarks.find((b) => b.name === tab);
    const ranked = bench.columns.map((id) => columns.get(id)).filter((c) => c.ranked);
    const sanity = bench.columns.map((id) => columns.get(id)).filter((c) => !c.ranked);
    const cols = [nameColumn(), numberColumn(`avg_rank:${tab}`, "avg rank", tab, (e) => e.avg_rank_by_benchmark[tab], `average rank on ${tab}`)];
    cols.push(...ranked.map(scoreColumn));
    const sanityCols = sanity.map(sanityColumn);
    if (sanityCols.length) sanityCols[0].groupStart = true;
    cols.push(...sanityCols);
    return cols;
  }

  // ------------------------------------------------------------------ table
  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1;
    if (b === null || b === undefined) return -1;
    return a < b ? -1 : 1;
  }

  function defaultSortKey(tab) { return tab === OVERVIEW ? "avg_rank" : `avg_rank:${tab}`; }

  function sortedRows(cols) {
    const col = cols.find((c) => c.key === state.sortKey) || cols.find((c) => c.key === defaultSortKey(state.tab));
    const filter = state.filter.trim().toLowerCase();
    const visible = DATA.explainers.filter((e) => e.name.toLowerCase().includes(filter));
    const order = (rows) => rows.map((e, i) => [e, i]).sort((x, y) => {
      const vx = col.sortValue(x[0]), vy = col.sortValue(y[0]);
      if (vx === null || vx === undefined || vy === null || vy === undefined) return compare(vx, vy) || x[1] - y[1];
      return state.sortDir * compare(vx, vy) || x[1] - y[1];
    }).map((pair) => pair[0]);
    const methods = order(visible.filter((e) => e.role !== "reference"));
    const refs = state.showRefs ? order(visible.filter((e) => e.role === "reference")) : [];
    return { methods, refs };
  }

  function renderTable() {
    const cols = viewColumns(state.tab);
    const table = document.getElementById("board");
    table.replaceChildren();
    const head = el("tr");
    for (const col of cols) {
      const active = col.key === (state.sortKey || defaultSortKey(state.tab));
      const th = el("th", {
        "data-key": col.key, title: col.title, scope: "col",
        className: [active ? (state.sortDir > 0 ? "sorted-asc" : "sorted-desc") : "", col.groupStart ? "group-start" : ""].join(" ").trim() || null,
        onclick: () => {
          if (state.sortKey === col.key || (!state.sortKey && active)) state.sortDir = -state.sortDir;
          else state.sortDir = 1;
          state.sortKey = col.key;
          renderTable();
        },
      }, el("div", { className: "h-name" }, col.label,
        col.info ? el("a", { className: "h-info", href: `#metric-${col.info}`, title: "metric card", text: "i", onclick: (ev) => ev.stopPropagation() }) : null),
      el("div", { className: "h-sub" + (col.flagged ? " flag" : ""), text: col.sub }));
      head.append(th);
    }
    const body = el("tbody");
    const { methods, refs } = sortedRows(cols);
    const row = (e) => el("tr", { "data-explainer": e.name, className: e.role === "reference" ? "reference" : null },
      cols.map((col) => el("td", { className: [col.best && col.best(e) ? "best" : "", col.groupStart ? "group-start" : ""].join(" ").trim() || null }, col.render(e))));
    methods.forEach((e) => body.append(row(e)));
    if (refs.length) {
      body.append(el("tr", { className: "ref-sep" }, el("td", { colspan: cols.length,
        text: "Reference rows: shown for comparison, not ranked; (#r) is the rank each would take among the methods." })));
      refs.forEach((e) => body.append(row(e)));
    }
    table.append(el("thead", {}, head), body);
    document.getElementById("row-count").textContent = `${methods.length + refs.length} of ${DATA.explainers.length} explainers`;
  }

  // ------------------------------------------------------------------ sections
  function renderTabs() {
    const nav = document.getElementById("tabs");
    nav.replaceChildren();
    const tabs = [[OVERVIEW, "Overview"], ...DATA.benchmarks.map((b) => [b.name, b.name])];
    for (const [id, label] of tabs) {
      nav.append(el("button", {
        role: "tab", "data-tab": id, "aria-selected": String(state.tab === id), text: label,
        onclick: () => { state.tab = id; state.sortKey = null; state.sortDir = 1; render(); },
      }));
    }
  }

  function renderLegend() {
    const legend = document.getElementById("legend");
    const anyIntervals = DATA.columns.some((c) => c.has_rank_intervals) || DATA.explainers.some((e) => e.avg_rank_low !== null);
    legend.replaceChildren(
      el("b", { text: "How to read: " }),
      "#r = rank among the methods (1 = best; ties share their average rank); the average rank averages the ranked (non-sanity) metrics. ",
      anyIntervals
        ? `[a–b] = ${LEVEL} % bootstrap interval of the rank; ± = half-width of the ${LEVEL} % CI of the score, drawn as a whisker. Green bold = best method or not significantly worse than it; ≈ = not significantly better than the next-ranked method (paired bootstrap of the difference, ${LEVEL} %). `
        : "These results carry no bootstrap draws: no intervals, no significance marks. ",
      "Reference rows (e.g. random, loss) never shift the methods' ranks. Sanity checks are pass/fail, not ranked. ",
      `⚠ SNR < ${fmt(DATA.meta.snr_flag)}: on that metric the spread between methods is small next to the spread between replicates, so its ranking is mostly noise. `,
      "Hover a score for its interval, number of units and baseline; (i) in a header opens the metric's card.");
  }

  function figure(name, caption) {
    if (!IMAGES[name]) return null;
    return el("figure", {}, el("img", { alt: caption, src: IMAGES[name] }), el("figcaption", { text: caption }));
  }

  function renderFigures() {
    const section = document.getElementById("figures");
    const figs = state.tab === OVERVIEW
      ? [figure("runtime_vs_rank", "Runtime vs. average rank (whiskers: rank interval)"), figure("heatmap", "Scores by metric; colour: rank within the metric"), figure("metric_agreement", "Metric agreement: Kendall's tau between the explainer rankings"), figure("memory", "Peak memory")]
      : [figure(`topk_${state.tab}`, `${state.tab}: top-k training samples per explainer`)];
    const present = figs.filter((f) => f);
    section.replaceChildren(...(present.length ? [el("h2", { text: "Figures" }), ...present] : []));
  }

  function cardTable(entries) {
    return el("table", {}, el("tbody", {}, entries.map(([k, v]) => el("tr", {},
      el("td", { text: k }), el("td", { text: typeof v === "object" && v !== null ? JSON.stringify(v) : fmt(v) })))));
  }

  function renderBenchmarkCards() {
    const section = document.getElementById("benchmark-cards");
    const shown = DATA.benchmarks.filter((b) => state.tab === OVERVIEW || b.name === state.tab);
    const cards = shown.map((b) => {
      const card = b.card || {};
      const flags = Array.isArray(card.flags) ? card.flags : [];
      const entries = [["training samples", b.n_train], ["test points", b.n_test], ["device", b.device || "–"],
        ...Object.entries(card).filter(([k]) => k !== "flags")];
      return el("div", { className: "card", id: `benchmark-${b.name}` }, el("h3", { text: b.name }),
        flags.length ? el("p", { className: "flags", text: "⚠ " + flags.join("; ") }) : null,
        cardTable(entries));
    });
    section.replaceChildren(el("h2", { text: "Benchmark cards" }), el("div", { className: "cards" }, cards));
  }

  function renderMetricCards() {
    const section = document.getElementById("metric-cards");
    const ids = state.tab === OVERVIEW ? DATA.columns : DATA.columns.filter((c) => c.benchmark === state.tab);
    const names = [...new Set(ids.map((c) => c.metric))];
    const cards = names.map((name) => {
      const m = DATA.metrics[name];
      const unit = (ids.find((c) => c.metric === name) || {}).unit || m.unit;
      return el("div", { className: "card", id: `metric-${name}` }, el("h3", { text: name }),
        el("div", {}, el("span", { className: "badge", text: m.category || "uncategorised" }),
          el("span", { className: "badge", text: m.higher_is_better ? "↑ higher is better" : "↓ lower is better" }),
          el("span", { className: "badge", text: `unit: ${unit}` }),
          m.category === "sanity" ? el("span", { className: "badge", text: "pass/fail, not ranked" }) : null),
        m.summary ? el("p", { text: m.summary }) : null,
        m.description && m.description !== m.summary ? el("p", { text: m.description }) : null,
        m.citation ? el("p", { className: "cite", text: m.citation }) : null);
    });
    section.replaceChildren(el("h2", { text: "Metrics" }), el("div", { className: "cards" }, cards));
  }

  function plainTable(headers, rows) {
    return el("table", { className: "plain" }, el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((v) => el("td", { text: typeof v === "number" ? fmt(v) : (v ?? "–") }))))));
  }

  function renderExtras() {
    const section = document.getElementById("extras");
    const parts = [];
    const inTab = (r) => state.tab === OVERVIEW || r.benchmark === state.tab;
    const xda = DATA.xda.filter(inTab);
    if (xda.length) {
      parts.push(el("h2", { text: "Feature-level (XDA) scores" }),
        plainTable(["benchmark", "explainer", "metric", "score"], xda.map((r) => [r.benchmark, r.explainer, r.metric, r.score])));
    }
    const meta = (DATA.meta_evaluation || []).filter(inTab);
    if (meta.length) {
      parts.push(el("h2", { text: "Meta-evaluation (which metrics can be trusted)" }),
        plainTable(["benchmark", "metric", "noise resilience", "adversarial reactivity", "meta-consistency", "flagged"],
          meta.map((r) => [r.benchmark, r.metric, r.noise_resilience, r.adversarial_reactivity, r.meta_consistency, r.flagged === null ? "–" : (r.flagged ? "⚠ yes" : "no")])));
    }
    const problems = DATA.problems.filter(inTab);
    if (problems.length) {
      parts.push(el("h2", { text: "Failed or skipped" }),
        plainTable(["benchmark", "explainer", "metric", "status", "error"], problems.map((r) => [r.benchmark, r.explainer, r.metric, r.status, r.error])));
    }
    section.replaceChildren(...parts);
  }

  function render() {
    renderTabs();
    renderTable();
    renderLegend();
    renderFigures();
    renderBenchmarkCards();
    renderMetricCards();
    renderExtras();
  }

  document.getElementById("meta").textContent =
    `dattr_eval ${DATA.meta.dattr_eval_version} · generated ${DATA.meta.generated} · ` +
    `${DATA.explainers.length} explainers on ${DATA.benchmarks.length} benchmark(s) · intervals: ${LEVEL} % bootstrap`;
  document.getElementById("filter").addEventListener("input", (ev) => { state.filter = ev.target.value; renderTable(); });
  document.getElementById("show-refs").addEventListener("change", (ev) => { state.showRefs = ev.target.checked; renderTable(); });
  render();
})();
