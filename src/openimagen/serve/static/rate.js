// The rating page: one prompt at a time, two questions, votes stored by the server.
"use strict";

const $ = (id) => document.getElementById(id);
const KEYS = {
  q: ["quality", "A"], w: ["quality", "indifferent"], e: ["quality", "B"],
  a: ["alignment", "A"], s: ["alignment", "indifferent"], d: ["alignment", "B"],
};
let rater = "";
let current = null; // the prompt shown: {prompt_index, prompt, a, b}
let answers = {};
let voteId = "";
let lastVote = null;
let busy = false;

function newId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").classList.toggle("error", Boolean(isError));
}

async function call(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) {
    throw new Error(response.status + ": " + ((data.error && data.error.message) || response.statusText));
  }
  return data;
}

function fill(grid, urls) {
  grid.replaceChildren(...urls.map((url, i) => {
    const img = document.createElement("img");
    img.src = url;
    img.alt = "image " + (i + 1);
    return img;
  }));
}

function show(state) {
  $("progress-text").textContent = "Rated " + state.done + " of " + state.total;
  $("progress").hidden = false;
  $("progress").max = state.total;
  $("progress").value = state.done;
  lastVote = state.last_vote;
  $("undo").disabled = !lastVote;
  $("undo-finished").disabled = !lastVote;
  const item = state.item;
  $("finished").hidden = Boolean(item);
  $("rating").hidden = !item;
  if (!item) {
    current = null;
    return;
  }
  if (!current || current.prompt_index !== item.prompt_index) {
    current = item;
    answers = {};
    voteId = newId();
    $("prompt").textContent = item.prompt;
    $("caption").textContent = item.prompt;
    fill($("set-a"), item.a);
    fill($("set-b"), item.b);
  }
  render();
}

function render() {
  for (const group of document.querySelectorAll(".answers")) {
    const chosen = answers[group.dataset.question];
    for (const button of group.querySelectorAll("button")) {
      button.classList.toggle("chosen", button.dataset.answer === chosen);
      button.setAttribute("aria-pressed", String(button.dataset.answer === chosen));
    }
  }
  $("submit").disabled = !(answers.quality && answers.alignment);
}

async function start(event) {
  if (event) event.preventDefault();
  const name = $("rater").value.trim();
  if (!name) {
    setStatus("Type your name first.", true);
    return;
  }
  try {
    const state = await call("GET", "/api/next?rater=" + encodeURIComponent(name));
    rater = state.rater;
    localStorage.setItem("openimagen-rater", rater);
    current = null;
    show(state);
    $("rater").blur(); // the keys now answer the questions
    setStatus("Rating as " + rater + ".");
  } catch (err) {
    setStatus("Could not start: " + err.message, true);
  }
}

function choose(question, answer) {
  if (!current || busy) return; // while a vote is on its way, keys do not change it
  answers[question] = answer;
  render();
}

async function submit() {
  if (!current || !(answers.quality && answers.alignment) || busy) return;
  busy = true;
  try {
    const state = await call("POST", "/api/vote", {
      rater, vote_id: voteId, prompt_index: current.prompt_index,
      quality: answers.quality, alignment: answers.alignment,
    });
    show(state);
    setStatus(state.recorded ? "Vote saved." : "That vote was already saved.");
  } catch (err) {
    setStatus("The vote was not saved: " + err.message, true);
  } finally {
    busy = false;
  }
}

async function undo() {
  if (!lastVote || busy) return;
  busy = true;
  try {
    const state = await call("POST", "/api/undo", { rater, vote_id: lastVote.vote_id });
    current = null;
    show(state);
    setStatus(state.undone ? "Last vote undone: answer this prompt again." : "Nothing to undo.");
  } catch (err) {
    setStatus("Undo failed: " + err.message, true);
  } finally {
    busy = false;
  }
}

document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) return;
  if (!rater) return;
  const key = event.key.toLowerCase();
  if (KEYS[key]) {
    choose(...KEYS[key]);
  } else if (key === "enter") {
    submit();
  } else if (key === "u") {
    undo();
  } else {
    return;
  }
  event.preventDefault();
});

for (const group of document.querySelectorAll(".answers")) {
  for (const button of group.querySelectorAll("button")) {
    button.addEventListener("click", () => choose(group.dataset.question, button.dataset.answer));
  }
}
$("who").addEventListener("submit", start);
$("submit").addEventListener("click", submit);
$("undo").addEventListener("click", undo);
$("undo-finished").addEventListener("click", undo);

const saved = localStorage.getItem("openimagen-rater");
if (saved) {
  $("rater").value = saved;
  start();
}
