// drayman's pages work without this script; it only keeps them current without a reload.
// Four things, each switched on by a data attribute that the server rendered:
//   #grid[data-grid-src]     redraw the grid from grid.json every 1.5 s
//   #graph[data-graph-src]   recolour the graph's nodes from graph.json until the run ends
//   [data-live-src]          swap in the server-rendered part of a page while it may change
//   #log[data-follow="1"]    append what a running try writes to its log
// Text from the server is set with textContent (never parsed as HTML), except the
// live regions, which are the server's own escaped templates.
"use strict";

const POLL_MS = 1500;

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function every(ms, step) {
  // run `step` now and then every `ms` while it returns true; pause while the tab is hidden
  const tick = async () => {
    if (document.hidden) { setTimeout(tick, ms); return; }
    let again = true;
    try { again = await step(); } catch (error) { console.warn(error); }
    if (again) setTimeout(tick, ms);
  };
  setTimeout(tick, ms);
}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// -- the grid ---------------------------------------------------------------------------------

function drawGrid(box, data) {
  if (!data.runs.length) return;
  const grid = el("div", { class: "grid" });
  const head = grid.appendChild(el("div", { class: "gr" }));
  head.appendChild(el("span", { class: "gt" }));
  for (const run of data.runs) {
    head.appendChild(el("a", { class: `run-bar s-${run.state}`, href: run.url, title: `${run.run_id}: ${run.state}` }));
  }
  data.tasks.forEach((task, i) => {
    const row = grid.appendChild(el("div", { class: "gr" }));
    row.appendChild(el("span", { class: "gt", title: task }, task));
    for (const run of data.runs) {
      const cell = run.cells[i];
      if (!cell) { row.appendChild(el("i")); continue; }
      const attrs = { class: cell.code, title: `${task} · ${run.run_id}: ${cell.state}` };
      if (cell.url) attrs.href = cell.url;
      row.appendChild(el(cell.url ? "a" : "i", attrs));
    }
  });
  const old = box.querySelector(".grid");
  if (old) old.replaceWith(grid); else box.prepend(grid);
}

function followGrid(box) {
  let last = "";
  every(POLL_MS, async () => {
    const data = await getJSON(box.dataset.gridSrc);
    const text = JSON.stringify(data);
    if (text !== last) { last = text; drawGrid(box, data); }
    return true;
  });
}

// -- the graph --------------------------------------------------------------------------------

const STATE_NAME = /^[a-z_]{1,32}$/;  // a state goes into a class name: nothing else may

function paintGraph(box, data) {
  box.querySelectorAll("g.node[data-task]").forEach((node) => {
    const task = node.dataset.task;
    const found = Object.prototype.hasOwnProperty.call(data.states, task) ? data.states[task] : "none";
    const state = STATE_NAME.test(found) ? found : "none";
    node.setAttribute("class", `node s-${state}`);
    const title = node.querySelector("title");
    if (title) title.textContent = `${task}${node.dataset.mapped ? " (mapped)" : ""}: ${state}`;
  });
}

function followGraph(box) {
  let last = "";
  every(POLL_MS, async () => {
    const data = await getJSON(box.dataset.graphSrc);
    const text = JSON.stringify(data.states);
    if (text !== last) { last = text; paintGraph(box, data); }
    return !data.finished;
  });
}

// -- live regions -----------------------------------------------------------------------------

function followRegion(box) {
  if (box.dataset.unfinished !== "1") return;
  every(POLL_MS, async () => {
    const data = await getJSON(box.dataset.liveSrc);
    box.innerHTML = data.html;
    box.dataset.unfinished = data.unfinished ? "1" : "0";
    return data.unfinished;
  });
}

// -- the log ----------------------------------------------------------------------------------

function followLog(pre) {
  const status = document.getElementById("log-status");
  let pos = pre.dataset.pos;
  let source = pre.dataset.source;
  every(POLL_MS, async () => {
    for (let pages = 0; pages < 20; pages++) {  // catch up a page at a time, then wait
      const query = new URLSearchParams({ pos: pos, source: source });
      const data = await getJSON(`${pre.dataset.logSrc}?${query}`);
      if (data.restart) pre.textContent = "";
      if (data.text) {
        const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.appendChild(document.createTextNode(data.text));
        if (atBottom) pre.scrollTop = pre.scrollHeight;
      }
      pos = String(data.pos);
      source = data.source;
      if (data.more) continue;
      if (data.ended) {
        if (status) status.textContent = `the try has ended: ${data.state}`;
        const badge = document.querySelector("#try-state .state");
        if (badge) { badge.textContent = data.state; badge.className = `state s-${data.state}`; }
        return false;
      }
      return true;
    }
    return true;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const grid = document.querySelector("#grid[data-grid-src]");
  if (grid) followGrid(grid);
  const graph = document.querySelector("#graph[data-graph-src]");
  if (graph) followGraph(graph);
  document.querySelectorAll("[data-live-src]").forEach(followRegion);
  const log = document.querySelector('#log[data-follow="1"]');
  if (log) followLog(log);
});
