/**
 * The console page: polls the console server's /api/state every second and redraws every panel in place. Numbers
 * that could not be read are shown as "—" next to the reason, never as 0.
 */
import uPlot from "uplot";
import type { ShapingOverride } from "../../lib/tsa-config.ts";
import type { ConsoleState, PodView, SuspensionView } from "../model.ts";

const REFRESH_MS = 1000;
const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const num = (n: number | null | undefined) => (n === null || n === undefined ? "—" : n.toLocaleString("en-US"));
const rate = (n: number | null | undefined) =>
  n === null || n === undefined ? "—" : n.toLocaleString("en-US", { maximumFractionDigits: 1 });

type Cell = string | { text: string; field?: string; cls?: string; title?: string };

/** Replaces a table body's rows; each row is keyed by a data attribute so tests and people can find it. */
function fill(tbody: HTMLElement, key: string, rows: { id: string; cls?: string; cells: Cell[] }[], empty: string) {
  const trs = rows.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset[key] = r.id;
    if (r.cls) tr.className = r.cls;
    for (const c of r.cells) {
      const td = document.createElement("td");
      const cell = typeof c === "string" ? { text: c } : c;
      td.textContent = cell.text;
      if (cell.field) td.dataset.field = cell.field;
      if (cell.cls) td.className = cell.cls;
      if (cell.title) td.title = cell.title;
      tr.append(td);
    }
    return tr;
  });
  if (trs.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 9;
    td.className = "empty";
    td.textContent = empty;
    tr.append(td);
    trs.push(tr);
  }
  tbody.replaceChildren(...trs);
}

const n = (field: string, value: number | null | undefined): Cell => ({ text: num(value), field, cls: "n" });

function until(iso: string, now: number): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.max(0, Math.round((t - now) / 1000));
  const left =
    s >= 3600 ? `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m` : `${Math.floor(s / 60)}m${s % 60}s`;
  return `${new Date(t).toLocaleTimeString("en-GB")} (in ${left})`;
}

function chart(el: HTMLElement, title: string, series: { label: string; stroke: string }[]): uPlot {
  const opts: uPlot.Options = {
    title,
    width: Math.max(300, el.clientWidth),
    height: 220,
    scales: { x: { time: true } },
    series: [{}, ...series.map((s) => ({ ...s, width: 2, value: (_u: uPlot, v: number | null) => rate(v) }))],
    axes: [{}, { size: 60 }],
    // Values appear on hover; without a cursor the legend would show placeholders.
    legend: { live: false },
  };
  const u = new uPlot(opts, [[], ...series.map(() => [])], el);
  new ResizeObserver(() => u.setSize({ width: Math.max(300, el.clientWidth), height: 220 })).observe(el);
  return u;
}

const flowChart = chart($("flow-chart"), "messages/s", [
  { label: "injected", stroke: "#2f6fdf" },
  { label: "delivered", stroke: "#1b9e4b" },
  { label: "deferred", stroke: "#e08a00" },
  { label: "bounced", stroke: "#d2302f" },
]);
const queueChart = chart($("queue-chart"), "messages queued (all pods)", [
  { label: "scheduled", stroke: "#7a4fd6" },
  { label: "ready", stroke: "#0f9aa8" },
]);

/** Labelled numbers in one line, each findable by a data attribute. */
function figures(el: HTMLElement, attr: string, parts: readonly (readonly [string, string])[], tail: string) {
  el.replaceChildren(
    ...parts.flatMap(([label, text]) => {
      const b = document.createElement("strong");
      b.setAttribute(`data-${attr}`, label);
      b.textContent = text;
      return [document.createTextNode(` ${label} `), b];
    }),
    document.createTextNode(tail),
  );
}

function renderFlow(s: ConsoleState) {
  const h = s.history;
  flowChart.setData([h.t, h.injected, h.delivered, h.deferred, h.bounced] as uPlot.AlignedData);
  queueChart.setData([h.t, h.scheduled, h.ready] as uPlot.AlignedData);
  const last = h.t.length - 1;
  figures(
    $("rates"),
    "rate",
    [
      ["injected", rate(h.injected[last])],
      ["delivered", rate(h.delivered[last])],
      ["deferred", rate(h.deferred[last])],
      ["bounced", rate(h.bounced[last])],
    ],
    " — messages/s at the latest reading",
  );
  const t = s.kumod.totals;
  const pods = s.kumod.pods.length;
  const el = $("totals");
  figures(
    el,
    "total",
    [
      ["injected", num(t?.received)],
      ["delivered", num(t?.delivered)],
      ["deferred", num(t?.transientFailures)],
      ["bounced", num(t?.permanentFailures)],
    ],
    t
      ? ` — totals of kumod's counters (since each pod started) over ${s.kumod.reachable} of ${pods} pod${pods === 1 ? "" : "s"}`
      : " — no kumod pod could be read",
  );
  el.classList.toggle("warn", s.kumod.reachable < pods || !t);
}

function podRow(p: PodView) {
  const q = p.queues;
  return {
    id: p.id,
    cls: q ? "" : "unreachable",
    cells: [
      { text: p.id, title: p.url },
      q ? { text: "ok", field: "state" } : { text: `unreachable: ${p.error ?? ""}`, field: "state", cls: "bad" },
      n("scheduled", q?.scheduled),
      n("ready", q?.ready),
      n("connections", q?.connections),
      n("delivered", q?.delivered),
      n("transfail", q?.transientFailures),
      n("fail", q?.permanentFailures),
      n("received", q?.received),
    ],
  };
}

function renderPods(s: ConsoleState) {
  const k = s.kumod;
  $("pods-note").textContent =
    `${k.reachable} of ${k.pods.length} reachable${k.discoveryError ? ` — ${k.discoveryError}` : ""}`;
  $("pods-note").classList.toggle("warn", k.reachable < k.pods.length || !!k.discoveryError);
  fill($("pods-body"), "pod", k.pods.map(podRow), k.discoveryError ?? "no kumod pods found");
}

function renderDestinations(s: ConsoleState) {
  const sinkDown = s.sink.error !== undefined;
  const none = { accepted: 0, deferred: 0, bounced: 0 };
  const recent = (c = none) => `${num(c.accepted)} / ${num(c.deferred)} / ${num(c.bounced)}`;
  fill(
    $("domains-body"),
    "domain",
    s.domains.map((d) => ({
      id: d.domain,
      cells: [
        d.domain,
        n("queued", d.scheduled),
        n("accepted", sinkDown ? null : (d.sink?.accepted ?? 0)),
        n("deferred", sinkDown ? null : (d.sink?.deferred ?? 0)),
        n("bounced", sinkDown ? null : (d.sink?.bounced ?? 0)),
        { text: sinkDown ? "—" : recent(d.recent), field: "recent", cls: "n" },
      ],
    })),
    "no destinations yet",
  );
  fill(
    $("sites-body"),
    "site",
    s.sites.map((x) => ({
      id: `${x.source}->${x.site}`,
      cells: [
        { text: x.site, cls: "wrap" },
        x.source,
        n("ready", x.ready),
        n("connections", x.connections),
        n("delivered", x.delivered),
        n("transfail", x.transfail),
        n("fail", x.fail),
        { text: rate(x.rates?.delivered), field: "delivered-rate", cls: "n" },
        { text: rate(x.rates?.transfail), field: "transfail-rate", cls: "n" },
      ],
    })),
    s.kumod.reachable ? "no ready queues (idle queues are pruned from kumod's metrics)" : "no kumod pod could be read",
  );
  $("providers").hidden = s.providers.length === 0;
  fill(
    $("providers-body"),
    "provider",
    s.providers.map((p) => ({
      id: p.provider,
      cells: [
        p.provider,
        n("queued", p.queued),
        n("connections", p.connections),
        n("delivered", p.delivered),
        n("transfail", p.transfail),
        n("fail", p.fail),
      ],
    })),
    "",
  );
}

function renderTsa(s: ConsoleState, now: number) {
  const t = s.tsa;
  $("tsa-url").textContent = t.url;
  const status = $("tsa-status");
  status.textContent = t.error
    ? `tsa-daemon unreachable: ${t.error}`
    : `${t.suspensions.length} suspension${t.suspensions.length === 1 ? "" : "s"}, ${t.overrides.length} override${t.overrides.length === 1 ? "" : "s"}`;
  status.className = t.error ? "status bad" : "status";
  const what = (x: SuspensionView) => x.site ?? [x.domain, x.tenant, x.campaign].filter(Boolean).join(" / ");
  fill(
    $("suspensions-body"),
    "suspension",
    t.error
      ? []
      : t.suspensions.map((x) => ({
          id: `${x.source ?? ""}->${what(x)}`,
          cells: [
            x.scope,
            { text: what(x), cls: "wrap" },
            x.source ?? "",
            { text: x.reason, cls: "wrap" },
            until(x.expires, now),
          ],
        })),
    t.error ? "unknown: tsa-daemon unreachable" : "none",
  );
  fill(
    $("overrides-body"),
    "override",
    t.error
      ? []
      : t.overrides.map((o: ShapingOverride) => ({
          id: `${o.domain}/${o.source}/${o.name}`,
          cells: [
            o.domain + (o.mxRollup ? " (MX rollup)" : ""),
            o.source,
            `${o.name} = ${o.value}`,
            { text: o.reason, cls: "wrap" },
            until(o.expires, now),
          ],
        })),
    t.error ? "unknown: tsa-daemon unreachable" : "none",
  );
}

let scenarioChoices = "";
function renderSink(s: ConsoleState) {
  const k = s.sink;
  $("sink-url").textContent = k.url;
  const status = $("sink-status");
  status.textContent = k.error ? `sink unreachable: ${k.error}` : "";
  status.className = k.error ? "status bad" : "status";
  $("sink-active").textContent = k.stats?.scenario ?? "unknown";
  const select = $<HTMLSelectElement>("sink-scenario");
  const choices = (k.available ?? []).join(",");
  if (choices !== scenarioChoices && k.available) {
    scenarioChoices = choices;
    const keep = select.value;
    select.replaceChildren(
      ...k.available.map((name) => {
        const o = document.createElement("option");
        o.value = o.textContent = name;
        return o;
      }),
    );
    select.value = k.available.includes(keep) ? keep : (k.stats?.scenario ?? k.available[0] ?? "");
  }
  $<HTMLButtonElement>("sink-switch").disabled = !!k.error;
  const st = k.stats;
  figures(
    $("sink-totals"),
    "sink",
    [
      ["accepted", num(st?.recipients.accepted)],
      ["deferred", num(st?.recipients.deferred)],
      ["bounced", num(st?.recipients.bounced)],
      ["open connections", num(st?.connections.active)],
    ],
    " recipients since the sink started; by domain under Destinations",
  );
  fill(
    $("faults-body"),
    "rule",
    Object.entries(st?.faults ?? {})
      .sort((a, b) => b[1] - a[1])
      .map(([rule, count]) => ({ id: rule, cells: [rule, n("fired", count)] })),
    k.error ? "unknown: sink unreachable" : "no rule has fired",
  );
  fill(
    $("replies-body"),
    "reply",
    Object.entries(st?.replies ?? {})
      .sort((a, b) => a[0].localeCompare(b[0]))
      .map(([key, count]) => {
        const [stage, code] = key.split(":");
        return { id: key, cells: [stage ?? "", code ?? "", n("count", count)] };
      }),
    k.error ? "unknown: sink unreachable" : "no replies yet",
  );
}

function render(s: ConsoleState) {
  const now = Date.now();
  renderFlow(s);
  renderPods(s);
  renderDestinations(s);
  renderTsa(s, now);
  renderSink(s);
  $("updated").textContent = `read at ${new Date(s.at).toLocaleTimeString("en-GB")}`;
  $("updated").dataset.at = s.at;
}

async function refresh() {
  const live = $("live");
  try {
    const res = await fetch("/api/state", { cache: "no-store" });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    render((await res.json()) as ConsoleState);
    live.textContent = "live";
    live.className = "badge ok";
  } catch (err) {
    live.textContent = `console server unreachable (${(err as Error).message}), retrying`;
    live.className = "badge bad";
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

$("scenario-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = $<HTMLSelectElement>("sink-scenario").value;
  const out = $("scenario-result");
  out.textContent = `switching to ${name}…`;
  try {
    const res = await fetch("/api/scenario", {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name }),
    });
    const body = (await res.json()) as { name?: string; error?: string };
    out.textContent = res.ok ? `switched to ${body.name}` : `not switched: ${body.error ?? res.status}`;
    out.className = res.ok ? "" : "bad";
  } catch (err) {
    out.textContent = `not switched: ${(err as Error).message}`;
    out.className = "bad";
  }
});

void refresh();
