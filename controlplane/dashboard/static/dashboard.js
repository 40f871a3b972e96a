// The dashboard's own script: everything here enhances pages that read fine without it.
// htmx (with its SSE extension) re-fetches the live fragments; this file adds the copy buttons,
// the live-feed indicator and the per-node charts (uPlot).
(function () {
  "use strict";
  document.documentElement.classList.replace("nojs", "js");

  // Copy buttons: one listener for the whole page, so buttons in swapped-in fragments work too.
  document.addEventListener("click", function (ev) {
    var button = ev.target.closest("button[data-copy]");
    if (!button) return;
    var text = button.getAttribute("data-copy");
    var done = function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy"; }, 1200); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { button.textContent = "Copy failed"; });
    } else {
      var area = document.createElement("textarea");
      area.value = text; document.body.appendChild(area); area.select();
      try { document.execCommand("copy"); done(); } finally { area.remove(); }
    }
  });

  function feedState(state, text) {
    var span = document.querySelector("#feed-state span");
    if (span) { span.textContent = text; span.setAttribute("data-state", state); }
  }
  document.addEventListener("htmx:sseOpen", function () {
    feedState("live", "live");
    // What changed between this page's rendering and the feed's (re)connection was never sent
    // to it: every live fragment re-fetches itself once.
    document.querySelectorAll('[hx-trigger*="refresh"]').forEach(function (el) { htmx.trigger(el, "refresh"); });
  });

  // ---- the overview's rows: one cache's message re-fetches that cache's row only ------------
  // Replacing the whole 100-row table on every message cost the browser ~100 ms of layout and
  // queued each change behind the previous fetch. A row being fetched when another message about
  // it comes is fetched once more afterwards (never more), so the row ends at the latest state.
  var rowFetches = {};
  function rowSelector(kind, id) {
    return 'tr[data-kind="' + CSS.escape(kind) + '"][data-cache="' + CSS.escape(id) + '"]';
  }
  function recount(tbody) {
    var count = document.querySelector("#caches caption .count");
    if (count) count.textContent = tbody.querySelectorAll("tr[data-cache]").length;
  }
  function placeRow(tbody, kind, id, html) {
    var old = tbody.querySelector(rowSelector(kind, id));
    if (!html) {  // gone
      if (old) { old.remove(); recount(tbody); }
      return;
    }
    var tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    var row = tpl.content.querySelector("tr[data-cache]");
    if (!row) return;
    // A member cluster's message answers with its group's row: place that one.
    var shown = tbody.querySelector(rowSelector(row.getAttribute("data-kind"), row.getAttribute("data-cache")));
    if (shown) { shown.replaceWith(row); return; }
    var empty = tbody.querySelector("td.empty");
    if (empty) empty.parentNode.remove();
    // Groups are listed first, then clusters: a new group goes before the first cluster.
    var firstCluster = row.getAttribute("data-kind") === "replication-group" &&
      tbody.querySelector('tr[data-kind="cache-cluster"]');
    if (firstCluster) tbody.insertBefore(row, firstCluster); else tbody.appendChild(row);
    recount(tbody);
  }
  function fetchRow(kind, id, account, region) {
    var key = [kind, id, account, region].join("|");
    if (rowFetches[key]) { rowFetches[key] = "again"; return; }
    rowFetches[key] = "busy";
    var query = new URLSearchParams({ kind: kind, id: id, account: account, region: region });
    fetch("/dashboard/fragments/cache-row?" + query, { headers: { accept: "text/html" } }).then(function (r) {
      if (r.status === 204) return "";
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.text();
    }).then(function (html) {
      var tbody = document.querySelector("#caches table.caches tbody");
      if (tbody) placeRow(tbody, kind, id, html);
    }).catch(function () {
      htmx.trigger(document.getElementById("caches"), "refresh");  // the whole table instead
    }).finally(function () {
      var again = rowFetches[key] === "again";
      delete rowFetches[key];
      if (again) fetchRow(kind, id, account, region);
    });
  }
  document.addEventListener("htmx:sseMessage", function (ev) {
    if (!ev.target || ev.target.id !== "caches-feed" || !ev.detail || !ev.detail.data) return;
    var msg;
    try { msg = JSON.parse(ev.detail.data); } catch (e) { return; }
    if (ev.detail.type === "node") {
      if (msg.replication_group_id) fetchRow("replication-group", msg.replication_group_id, msg.account, msg.region);
      else if (msg.cache_cluster_id) fetchRow("cache-cluster", msg.cache_cluster_id, msg.account, msg.region);
    } else if (msg.kind === "cache-cluster" || msg.kind === "replication-group") {
      fetchRow(msg.kind, msg.id, msg.account, msg.region);
    }
  });
  document.addEventListener("htmx:sseError", function () { feedState("reconnecting", "reconnecting…"); });

  // ---- charts: readings polled from the JSON API, one series per node -----------------------
  var WINDOW = 120; // points kept: two minutes at one a second
  function reading(node, name) { return typeof node[name] === "number" ? node[name] : null; }
  // GET /api/v1/nodes: {"nodes": [{cache_cluster_id, node_id, role, replication_lag_bytes, ops_per_second, ...}]}
  function label(node) { return node.cache_cluster_id + "/" + node.node_id; }
  function Chart(el, title) { this.el = el; this.title = title; this.plot = null; this.keys = ""; }
  Chart.prototype.draw = function (times, series) {
    var names = Object.keys(series).sort();
    var data = [times].concat(names.map(function (n) { return series[n]; }));
    var keys = names.join("|");
    if (this.plot && keys === this.keys) { this.plot.setData(data); return; }
    // The set of nodes changed (a failover replaced one, a role swapped): a new chart.
    if (this.plot) this.plot.destroy();
    var palette = ["#1f5fbf", "#17803d", "#a15c00", "#b42318", "#6b3fa0", "#0e7c86"];
    this.keys = keys;
    this.plot = new uPlot({
      width: Math.max(300, this.el.clientWidth - 8), height: 200,
      series: [{}].concat(names.map(function (n, i) { return { label: n, stroke: palette[i % palette.length], width: 2 }; })),
      axes: [{}, { size: 60 }], scales: { x: { time: true } }
    }, data, this.el);
  };

  function startCharts(section) {
    if (typeof uPlot === "undefined") return;
    var url = section.getAttribute("data-nodes-url");
    var state = section.querySelector(".chart-state");
    var lag = new Chart(section.querySelector("#lag-chart")), ops = new Chart(section.querySelector("#ops-chart"));
    var times = [], lagSeries = {}, opsSeries = {};
    function push(store, key, value) {
      if (!store[key]) store[key] = times.map(function () { return null; }).slice(0, times.length - 1);
      store[key].push(value);
    }
    function tick() {
      fetch(url, { headers: { accept: "application/json" } }).then(function (r) {
        if (!r.ok) throw new Error("GET " + url.split("?")[0] + ": HTTP " + r.status);
        return r.json();
      }).then(function (body) {
        var nodes = body.nodes || [];
        times.push(Date.now() / 1000);
        var seen = {};
        nodes.forEach(function (n) {
          var key = label(n); seen[key] = true;
          // A primary has no lag: 0 rather than a gap, so its line says "primary now".
          push(lagSeries, key, n.role === "primary" ? 0 : reading(n, "replication_lag_bytes"));
          push(opsSeries, key, reading(n, "ops_per_second"));
        });
        [lagSeries, opsSeries].forEach(function (store) {
          Object.keys(store).forEach(function (k) {
            if (!seen[k]) store[k].push(null);
            if (store[k].every(function (v) { return v === null; })) delete store[k]; // gone for the whole window
            else if (store[k].length > WINDOW) store[k].splice(0, store[k].length - WINDOW);
          });
        });
        if (times.length > WINDOW) times.splice(0, times.length - WINDOW);
        lag.draw(times.slice(), lagSeries); ops.draw(times.slice(), opsSeries);
        if (state) state.textContent = nodes.length + " node(s), updated every second";
      }).catch(function (err) {
        if (state) state.textContent = "Node readings unavailable: " + err.message;
      });
    }
    tick();
    setInterval(tick, 1000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var section = document.querySelector("section.charts[data-nodes-url]");
    if (section) startCharts(section);
  });
})();
