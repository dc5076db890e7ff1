// The openimagen page: one POST to the OpenAI-compatible endpoint, progress by polling.
"use strict";

const $ = (id) => document.getElementById(id);
let busy = false;

function requestId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").classList.toggle("error", Boolean(isError));
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("apikey").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function loadInfo() {
  try {
    const info = await (await fetch("/healthz")).json();
    $("model").textContent = info.model + " (" + info.sizes.join(", ") + ")";
    $("steps").placeholder = info.defaults.steps;
    $("steps").max = info.limits.max_steps;
    $("guidance").placeholder = info.defaults.guidance_weight;
    $("n").max = info.limits.max_n;
    $("prompt").maxLength = info.limits.max_prompt_chars;
    $("apikey-label").hidden = !info.auth_required;
  } catch (err) {
    setStatus("Cannot reach the server: " + err, true);
  }
}

async function pollProgress(id) {
  while (busy) {
    try {
      const r = await fetch("/v1/progress/" + id, { headers: headers() });
      if (r.ok) {
        const p = await r.json();
        if (p.state === "queued") {
          setStatus(p.queue_position ? "Waiting in queue (position " + (p.queue_position + 1) + ")" : "Waiting in queue");
        } else if (p.state === "running" && p.total > 0) {
          $("progress").max = p.total;
          $("progress").value = p.done;
          setStatus("Sampling: step " + p.done + " of " + p.total);
        }
      }
    } catch (err) {
      // progress is best effort; the main request reports real errors
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function showImages(data) {
  const box = $("images");
  box.replaceChildren();
  for (const item of data) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.src = item.b64_json ? "data:image/png;base64," + item.b64_json : item.url;
    img.alt = $("prompt").value + " (seed " + item.seed + ")";
    const cap = document.createElement("figcaption");
    cap.textContent = "seed " + item.seed;
    fig.append(img, cap);
    box.append(fig);
  }
}

async function generate(event) {
  event.preventDefault();
  if (busy) return;
  const body = { prompt: $("prompt").value, n: Number($("n").value || 1), response_format: "b64_json" };
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  if ($("steps").value !== "") body.steps = Number($("steps").value);
  if ($("guidance").value !== "") body.guidance_weight = Number($("guidance").value);
  const id = requestId();
  busy = true;
  $("generate").disabled = true;
  $("progress").hidden = false;
  $("progress").removeAttribute("value");  // indeterminate until the first step
  setStatus("Sending...");
  pollProgress(id);
  try {
    const r = await fetch("/v1/images/generations", {
      method: "POST",
      headers: Object.assign(headers(), { "X-Request-Id": id }),
      body: JSON.stringify(body),
    });
    const out = await r.json();
    if (!r.ok) {
      const message = out && out.error ? out.error.message : "HTTP " + r.status;
      setStatus("Error " + r.status + ": " + message, true);
    } else {
      showImages(out.data);
      setStatus("Done: " + out.data.length + " image(s).");
    }
  } catch (err) {
    setStatus("Request failed: " + err, true);
  } finally {
    busy = false;
    $("generate").disabled = false;
    $("progress").hidden = true;
  }
}

$("form").addEventListener("submit", generate);
loadInfo();
