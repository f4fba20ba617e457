// tunesmith ui: the few behaviours htmx does not cover. No inline scripts (the CSP forbids them), no network
// access beyond this server.
"use strict";

const POLL_MS = 2000;
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

// ---- charts: uPlot fed by a JSON endpoint {x: [...], series: {name: [...]}, live: bool} --------------------
function buildChart(el, data) {
  const names = Object.keys(data.series);
  const opts = {
    width: Math.max(320, el.clientWidth || 640),
    height: 260,
    scales: { x: { time: false } },
    // Whole-number step ticks only.
    axes: [{ label: "step", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] }, { label: data.label || "loss" }],
    series: [{ label: "step" }].concat(names.map((name, i) => ({
      label: name, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: true,
      points: { show: true, size: 5 },
    }))),
  };
  const rows = [data.x].concat(names.map((name) => data.series[name]));
  el.textContent = "";
  return new uPlot(opts, rows, el);
}

async function refreshChart(el) {
  let data;
  try {
    const response = await fetch(el.dataset.src, { headers: { Accept: "application/json" } });
    if (!response.ok) return true;
    data = await response.json();
  } catch (err) {
    return true; // the server may be restarting; try again
  }
  const key = Object.keys(data.series).join("|");
  if (!el._plot || el._key !== key) {
    if (el._plot) el._plot.destroy();
    if (data.x.length) {
      el._plot = buildChart(el, data);
      el._key = key;
    } else {
      el.textContent = "no points logged yet";
    }
  } else if (String(data.points) !== el.dataset.points) {
    el._plot.setData([data.x].concat(Object.keys(data.series).map((name) => data.series[name])));
  }
  el.dataset.points = String(data.points);
  return data.live;
}

function startChart(el) {
  if (el._started) return;
  el._started = true;
  const tick = async () => {
    if (!document.body.contains(el)) return;
    await refreshChart(el);
    // Keep polling: a Resume or a new evaluation can add points after the run looked finished.
    setTimeout(tick, POLL_MS);
  };
  tick();
}

// ---- New run: show only the fields of the chosen task and method ------------------------------------------
function applyVisibility() {
  const form = document.getElementById("new-run");
  if (!form) return;
  const task = form.querySelector("[name='task']").value;
  const method = form.querySelector("[name='method.name']").value;
  // The objective applies only where its field does (GRPO needs a causal LM): elsewhere it is sft.
  const objectiveField = form.querySelector("[name='train.objective']");
  const objectiveTasks = objectiveField ? (objectiveField.closest(".field").dataset.tasks || task).split(" ") : [];
  const objective = objectiveField && objectiveTasks.includes(task) ? objectiveField.value : "sft";
  // A conversation table (data.messages) is read as it is: the prompt and response templates do not apply.
  const messages = form.querySelector("[name='data.messages']");
  const messagesObjectives = messages ? (messages.closest(".field").dataset.objectives || objective).split(" ") : [];
  const conversation = messages && messages.value.trim() !== "" && messagesObjectives.includes(objective);
  form.querySelectorAll(".field").forEach((field) => {
    const tasks = field.dataset.tasks ? field.dataset.tasks.split(" ") : null;
    const methods = field.dataset.methods ? field.dataset.methods.split(" ") : null;
    const objectives = field.dataset.objectives ? field.dataset.objectives.split(" ") : null;
    const templated = field.id === "field-data-prompt" || field.id === "field-data-response";
    // A reward's options show once the reward is picked.
    const picked = field.dataset.reward ? form.querySelector(`[name='rewards.${field.dataset.reward}']`).checked : true;
    field.hidden = (tasks && !tasks.includes(task)) || (methods && !methods.includes(method)) ||
      (objectives && !objectives.includes(objective)) || (conversation && templated) || !picked;
  });
  // A section whose fields are all hidden (the rewards, unless the objective samples answers) goes too.
  form.querySelectorAll(".group").forEach((group) => {
    const empty = !Array.from(group.querySelectorAll(".field")).some((field) => !field.hidden);
    group.hidden = empty;
    const heading = group.previousElementSibling;
    if (heading && heading.tagName === "H2") heading.hidden = empty;
  });
}
document.addEventListener("input", (event) => {
  if (event.target.name === "data.messages") applyVisibility();
});

// Chat: a sent message leaves the box (the history shows it); tool results likewise.
document.addEventListener("htmx:afterRequest", (event) => {
  // (Not elt.id: the form's <select name="id"> shadows that property.)
  if (event.detail.elt !== document.getElementById("chat-form") || !event.detail.successful) return;
  const message = document.getElementById("message");
  if (message) message.value = "";
});

// Clicking a {column} chip inserts it into the template being edited.
let lastTemplate = null;
document.addEventListener("focusin", (event) => {
  if (event.target.matches && event.target.matches("textarea.template")) lastTemplate = event.target;
});
document.addEventListener("click", (event) => {
  const chip = event.target.closest && event.target.closest("button.column");
  if (!chip || !lastTemplate) return;
  const text = "{" + chip.dataset.column + "}";
  const at = lastTemplate.selectionStart ?? lastTemplate.value.length;
  lastTemplate.value = lastTemplate.value.slice(0, at) + text + lastTemplate.value.slice(lastTemplate.selectionEnd ?? at);
  lastTemplate.focus();
  lastTemplate.dispatchEvent(new Event("input", { bubbles: true }));
});
// Empty fields take the chosen task's defaults (those of the examples that were measured): show them.
function applyTaskDefaults() {
  const form = document.getElementById("new-run");
  if (!form) return;
  const task = form.querySelector("[name='task']").value;
  form.querySelectorAll(".field[data-defaults]").forEach((field) => {
    const value = JSON.parse(field.dataset.defaults)[task] || "";
    const input = field.querySelector("input, select, textarea");
    if (input.name === "task") return;
    if (input.tagName === "SELECT") {
      if (!input.dataset.touched && value) input.value = value; // a choice made by hand stays
    } else if (input.tagName === "INPUT") {
      input.placeholder = value || "unset";
    }
    const shown = field.querySelector(".default");
    if (shown) {
      shown.hidden = !value;
      shown.querySelector(".default-value").textContent = value;
    }
  });
}

document.addEventListener("change", (event) => {
  // A change event can reach a <form>, whose .name is its input named "name" (the run name), not a string.
  const name = typeof event.target.name === "string" ? event.target.name : "";
  if (event.target.tagName === "SELECT" && name !== "task") event.target.dataset.touched = "1";
  if (name === "task") applyTaskDefaults();
  const shapes = ["task", "method.name", "train.objective"];
  if (shapes.includes(name) || name.startsWith("rewards.")) applyVisibility();
});

// Download YAML is a plain form POST (a file comes back): a form the preview found wrong would get a bare error
// page instead, and the filled form would be gone. Say so next to the buttons and stay.
document.addEventListener("submit", (event) => {
  if (event.target.id !== "new-run") return;
  const problems = Array.from(event.target.querySelectorAll(".field-error"))
    .filter((el) => el.id !== "launch-error" && el.textContent.trim() && !el.closest("[hidden]"))
    .map((el) => el.textContent.trim());
  if (!problems.length) return;
  event.preventDefault();
  document.getElementById("launch-error").textContent = "Not downloaded: " + problems.join("; ");
});

function init(root) {
  root.querySelectorAll(".chart[data-src]").forEach(startChart);
  applyVisibility();
  // A newly shown table changes what the preview can render: refresh it.
  if (root.querySelector && root.querySelector("[data-refresh-preview]") && window.htmx) {
    const form = document.getElementById("new-run");
    if (form) htmx.trigger(form, "change");
  }
}

document.addEventListener("DOMContentLoaded", () => init(document));
document.addEventListener("htmx:afterSettle", (event) => init(event.target));
