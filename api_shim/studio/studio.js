/* ACE-Step Studio: compose, generate, listen, and the history of this browser, on this server's own API
   (docs/api.md). Plain JavaScript, no build step, no dependency; the page's CSP allows this file only. */
(() => {
  "use strict";

  const KEY_NAME = "acestep-studio-key";
  const HISTORY_NAME = "acestep-studio-history-v1";
  const HISTORY_MAX = 50;
  const POLL_MS = 600;
  const RETRY_MS = 3000;
  const WAVE_MAX_BYTES = 64 * 1024 * 1024; // larger files are played but not decoded for a picture
  const WAVE_BUCKETS = 2048;
  // the API's field names (as its one-line errors start) -> the form's fields
  const FIELDS = {
    prompt: "caption", caption: "caption", lyrics: "lyrics", audio_duration: "duration", batch_size: "batch-size",
    seed: "seed", audio_format: "format", bpm: "bpm", key_scale: "key-scale", time_signature: "time-signature",
    vocal_language: "language", inference_steps: "steps", sample_query: "sample-query", thinking: "thinking",
    use_format: "use-format",
  };

  const $ = (id) => document.getElementById(id);
  const form = $("song-form");

  // --- small helpers --------------------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function announce(text) {
    const live = $("announcer");
    live.textContent = "";
    window.setTimeout(() => { live.textContent = text; }, 50);
  }

  function storage(kind) {
    try { return window[kind]; } catch { return null; } // blocked storage (privacy settings) must not break the page
  }

  function readJson(kind, name, fallback) {
    try { return JSON.parse(storage(kind)?.getItem(name) ?? "null") ?? fallback; } catch { return fallback; }
  }

  function write(kind, name, value) {
    try {
      if (value === null) storage(kind)?.removeItem(name);
      else storage(kind)?.setItem(name, typeof value === "string" ? value : JSON.stringify(value));
    } catch { /* full or blocked: the page keeps working without it */ }
  }

  function bytesText(size) {
    return size >= 1048576 ? `${(size / 1048576).toFixed(1)} MB` : `${Math.max(1, Math.round(size / 1024))} KB`;
  }

  function timeText(ms) {
    return new Date(ms).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }

  // a path of this server, relative to the page, so the studio also works behind a proxy's path prefix
  const url = (path) => new URL(path.replace(/^\//, ""), document.baseURI).href;

  // --- the API key ----------------------------------------------------------------------------------------
  // Kept in sessionStorage (this tab, until it closes) unless "Remember on this browser" puts it in
  // localStorage: a key is a secret, and a shared machine should not keep it unless its user says so.
  const auth = {
    key: storage("sessionStorage")?.getItem(KEY_NAME) || storage("localStorage")?.getItem(KEY_NAME) || "",
    required: false,
    pending: null,
    headers() { return this.key ? { Authorization: `Bearer ${this.key}` } : {}; },
    set(key, remember) {
      this.key = key;
      write("sessionStorage", KEY_NAME, key);
      write("localStorage", KEY_NAME, remember ? key : null);
    },
    forget() {
      this.key = "";
      write("sessionStorage", KEY_NAME, null);
      write("localStorage", KEY_NAME, null);
    },
  };

  class ApiError extends Error {
    constructor(status, message, data) {
      super(message);
      this.status = status;
      this.data = data;
    }
  }

  function askForKey(message) {
    auth.required = true;
    $("key-button").hidden = false;
    if (auth.pending) return auth.pending.promise;
    const dialog = $("key-dialog");
    let settle;
    const promise = new Promise((resolve, reject) => { settle = { resolve, reject }; });
    auth.pending = { promise, settle };
    $("key-message").textContent = message || "This server asks for its API key (ACESTEP_API_KEY).";
    $("api-key").value = "";
    $("key-remember").checked = Boolean(storage("localStorage")?.getItem(KEY_NAME));
    $("key-forget").hidden = !auth.key;
    if (!dialog.open) dialog.showModal();
    $("api-key").focus();
    return promise;
  }

  function settleKey(ok) {
    const pending = auth.pending;
    auth.pending = null;
    const dialog = $("key-dialog");
    if (dialog.open) dialog.close();
    if (!pending) return;
    if (ok) pending.settle.resolve();
    else pending.settle.reject(new ApiError(401, "an API key is needed: enter it with the API key button"));
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) { $("api-key").focus(); return; }
    auth.set(key, $("key-remember").checked);
    settleKey(true);
    announce("API key saved");
  });
  $("key-cancel").addEventListener("click", () => settleKey(false));
  $("key-dialog").addEventListener("cancel", () => settleKey(false)); // Escape
  $("key-forget").addEventListener("click", () => {
    auth.forget();
    $("key-forget").hidden = true;
    $("api-key").value = "";
    $("api-key").focus();
    announce("API key forgotten");
  });
  $("key-button").addEventListener("click", () => {
    askForKey(auth.key ? "Enter another key, or forget the one kept." : null).then(resume, () => {});
  });

  // every call: the key in the header; a 401 asks for the key and tries again; the envelope unwrapped
  async function request(path, { method = "GET", body, raw = false } = {}) {
    for (let attempt = 0; ; attempt += 1) {
      const headers = { ...auth.headers() };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      let response;
      try {
        response = await fetch(url(path), { method, headers, cache: "no-store",
                                            body: body === undefined ? undefined : JSON.stringify(body) });
      } catch (err) {
        throw new ApiError(0, `the server did not answer (${err.message})`);
      }
      if (response.status === 401) {
        await askForKey(attempt > 0 || auth.key ? "That key was refused. Check it (ACESTEP_API_KEY) and try again."
                                                : null);
        continue;
      }
      if (raw && response.ok) return response;
      let envelope = null;
      try { envelope = await response.json(); } catch { /* not JSON: the status says enough */ }
      if (!response.ok || !envelope) {
        throw new ApiError(response.status, envelope?.error || `HTTP ${response.status}`, envelope?.data);
      }
      return envelope.data;
    }
  }

  // --- the server: health, model, LM ------------------------------------------------------------------------
  const server = { ready: false, lm: false, text: "" };

  function showServer(text, state) {
    const status = $("server-status");
    status.textContent = text;
    status.dataset.state = state;
  }

  async function checkServer() {
    let health;
    try {
      health = await request("health");
    } catch (err) {
      const data = err.data || {};
      if (data.status === "starting" || err.status === 0) {
        showServer(err.status === 0 ? "The server does not answer; retrying…" : "The model is loading…", "starting");
      } else {
        showServer(`Cannot generate: ${err.message}`, "error");
      }
      window.setTimeout(checkServer, RETRY_MS);
      return;
    }
    let models = null;
    try {
      models = await request("v1/models");
    } catch (err) {
      if (err.status === 401) { showServer("Waiting for the API key", "starting"); return; }
    }
    server.ready = true;
    server.lm = Boolean(models?.llm_initialized || health.llm_initialized);
    $("lm-options").hidden = !server.lm;
    const dit = models?.default_model || health.loaded_model || "model";
    const lm = models?.loaded_lm_model || health.loaded_lm_model;
    const where = health.backend === "runpod" ? "RunPod endpoint" : "pod mode";
    server.text = `${dit} · ${lm ? `LM ${lm}` : "no LM"} · ${where}`;
    showServer(server.text, "ok");
  }

  // --- the form ---------------------------------------------------------------------------------------------
  function labelOf(id) {
    const label = document.querySelector(`label[for="${id}"]`);
    return (label?.textContent || id).replace(/\s*\(.*\)\s*$/, "").trim();
  }

  function setFieldError(id, message) {
    const input = $(id);
    const field = input.closest(".field") || input.closest("label") || input.parentElement;
    const errorId = `${id}-error`;
    let error = $(errorId);
    if (!error) {
      error = el("p", { id: errorId, class: "error field-error" });
      field.append(error);
    }
    error.textContent = message;
    input.setAttribute("aria-invalid", "true");
    const described = (input.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
    if (!described.includes(errorId)) input.setAttribute("aria-describedby", [errorId, ...described].join(" "));
    field.classList.add("invalid");
  }

  function clearFieldError(id) {
    const input = $(id);
    const error = $(`${id}-error`);
    if (!input || !error) return;
    error.remove();
    input.removeAttribute("aria-invalid");
    const described = (input.getAttribute("aria-describedby") || "").split(/\s+/).filter((d) => d && d !== error.id);
    if (described.length) input.setAttribute("aria-describedby", described.join(" "));
    else input.removeAttribute("aria-describedby");
    input.closest(".invalid")?.classList.remove("invalid");
  }

  function clearErrors() {
    for (const id of new Set(Object.values(FIELDS))) clearFieldError(id);
    $("form-error").hidden = true;
    $("form-error").textContent = "";
  }

  function showFormError(message) {
    $("form-error").textContent = message;
    $("form-error").hidden = false;
  }

  // A 400 is one line, "field must ... (got ...)", several joined by "; ": each goes next to its field.
  function showSubmitError(err) {
    const parts = err.status === 400 ? err.message.split(/;\s+(?=[a-z_]+\b)/) : [err.message];
    const placed = [];
    const rest = [];
    for (const part of parts) {
      const name = /^([a-z_]+)\b/.exec(part)?.[1];
      const id = FIELDS[name];
      if (id && $(id) && !$(id).closest("[hidden]")) {
        setFieldError(id, `${labelOf(id)}${part.slice(name.length)}`);
        placed.push(id);
      } else {
        rest.push(part);
      }
    }
    const names = placed.map(labelOf).join(", ");
    showFormError(rest.length ? `Not generated: ${rest.join("; ")}` : `Not generated: check ${names}.`);
    if (placed.length) {
      $(placed[0]).closest("details")?.setAttribute("open", "");
      $(placed[0]).focus();
    }
  }

  function numberOf(id, name, body) {
    const input = $(id);
    if (input.validity.badInput) throw new ApiError(400, `${name} must be a number`);
    if (input.value.trim() !== "") body[name] = Number(input.value);
  }

  function collect() {
    const body = { prompt: $("caption").value.trim(), lyrics: $("lyrics").value, audio_format: $("format").value };
    const problems = [];
    for (const [id, name] of [["duration", "audio_duration"], ["batch-size", "batch_size"], ["bpm", "bpm"],
                              ["steps", "inference_steps"]]) {
      try { numberOf(id, name, body); } catch (err) { problems.push(err.message); }
    }
    if (problems.length) throw new ApiError(400, problems.join("; "));
    const seed = $("seed").value.trim();
    if (seed && seed !== "-1" && seed.toLowerCase() !== "random") {
      body.seed = seed;
      body.use_random_seed = false;
    }
    for (const [id, name] of [["key-scale", "key_scale"], ["time-signature", "time_signature"],
                              ["language", "vocal_language"]]) {
      if ($(id).value.trim()) body[name] = $(id).value.trim();
    }
    if (server.lm) {
      body.thinking = $("thinking").checked;
      body.use_format = $("use-format").checked;
      if ($("sample-query").value.trim()) body.sample_query = $("sample-query").value.trim();
    }
    return body;
  }

  let submitting = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (submitting) return;
    clearErrors();
    let body;
    try { body = collect(); } catch (err) { showSubmitError(err); return; }
    submitting = true;
    const button = $("generate");
    button.setAttribute("aria-disabled", "true");
    button.textContent = "Sending…";
    try {
      const data = await request("release_task", { method: "POST", body });
      const entry = {
        id: data.task_id, created: Date.now(), caption: body.prompt || body.sample_query || "",
        lyrics: body.lyrics, duration: body.audio_duration ?? null, batch: body.batch_size ?? null,
        format: body.audio_format, status: 0, stage: "queued", progress: 0, queue: data.queue_position,
        warnings: data.warnings || [], songs: [], error: null,
      };
      history.unshift(entry);
      history.splice(HISTORY_MAX);
      saveHistory();
      select(entry.id);
      announce(`Task sent: queue position ${data.queue_position}`);
      poll();
    } catch (err) {
      showSubmitError(err);
    } finally {
      submitting = false;
      button.removeAttribute("aria-disabled");
      button.textContent = "Generate";
    }
  });

  form.addEventListener("input", (event) => {
    if (event.target.id) clearFieldError(event.target.id);
  });

  for (const button of document.querySelectorAll("[data-tag]")) {
    button.addEventListener("click", () => insertTag(button.dataset.tag));
  }

  function insertTag(tag) {
    const lyrics = $("lyrics");
    const start = lyrics.selectionStart ?? lyrics.value.length;
    const end = lyrics.selectionEnd ?? start;
    const before = lyrics.value.slice(0, start);
    const gap = before === "" || before.endsWith("\n\n") ? "" : before.endsWith("\n") ? "\n" : "\n\n";
    lyrics.focus();
    lyrics.setRangeText(`${gap}${tag}\n`, start, end, "end");
    lyrics.dispatchEvent(new Event("input", { bubbles: true }));
  }

  $("random-sample").addEventListener("click", async () => {
    try {
      const sample = await request("create_random_sample", { method: "POST", body: { sample_type: "custom_mode" } });
      clearErrors();
      $("caption").value = sample.caption || "";
      $("lyrics").value = sample.lyrics || "";
      $("duration").value = sample.duration ?? "";
      $("bpm").value = sample.bpm ?? "";
      $("key-scale").value = sample.key_scale || "";
      $("time-signature").value = sample.time_signature || "";
      $("language").value = sample.vocal_language || "en";
      announce("A random sample was filled in");
    } catch (err) {
      showFormError(`No random sample: ${err.message}`);
    }
  });

  $("random-description").addEventListener("click", async () => {
    try {
      const sample = await request("create_random_sample", { method: "POST", body: { sample_type: "simple_mode" } });
      $("sample-query").value = sample.description || "";
      if (sample.vocal_language) $("language").value = sample.vocal_language;
      announce("A random description was filled in");
    } catch (err) {
      showFormError(`No random description: ${err.message}`);
    }
  });

  // --- tasks: the history of this browser, polled while unfinished ------------------------------------------
  const history = readJson("localStorage", HISTORY_NAME, []).filter((entry) => entry && entry.id);
  let selected = history[0]?.id || null;
  let pollTimer = null;
  let paused = false;

  function saveHistory() {
    write("localStorage", HISTORY_NAME, history);
    renderHistory();
  }

  function apply(entry, item) {
    let results = [];
    try { results = JSON.parse(item.result || "[]"); } catch { /* an empty list */ }
    const first = results[0] || {};
    entry.status = item.status;
    if (item.status === 0) {
      entry.progress = Number(first.progress) || 0;
      entry.stage = first.stage || "queued";
      const position = /position (\d+)/.exec(item.progress_text || "");
      entry.queue = entry.stage === "queued" ? (position ? Number(position[1]) : entry.queue) : null;
    } else if (item.status === 1) {
      const seeds = String(first.seed_value || "").split(",");
      entry.progress = 1;
      entry.stage = "succeeded";
      entry.queue = null;
      entry.songs = results.map((result, i) => ({
        file: result.file, seed: seeds[i] ?? "", metas: result.metas || {}, info: result.generation_info || "",
        dit: result.dit_model || "", lm: result.lm_model || "",
      }));
    } else {
      entry.stage = "failed";
      entry.queue = null;
      entry.error = first.error || String(item.progress_text || "failed").replace(/^failed: /, "");
    }
  }

  async function poll() {
    window.clearTimeout(pollTimer);
    const open = history.filter((entry) => entry.status === 0);
    if (!open.length || paused) return;
    let items;
    try {
      items = await request("query_result", { method: "POST", body: { task_id_list: open.map((e) => e.id) } });
    } catch (err) {
      if (err.status === 401) { paused = true; return; } // no key given: resumed when one is
      showServer(`Lost the server: ${err.message}; retrying…`, "starting");
      pollTimer = window.setTimeout(poll, RETRY_MS);
      return;
    }
    if (server.ready && $("server-status").dataset.state !== "ok") showServer(server.text, "ok"); // back again
    const before = current()?.stage;
    for (const item of items) {
      const entry = history.find((e) => e.id === item.task_id);
      if (entry) apply(entry, item);
    }
    saveHistory();
    renderNow();
    const now = current();
    if (now && now.stage !== before) {
      if (now.status === 1) announce(`Done: ${now.songs.length} song${now.songs.length === 1 ? "" : "s"} ready`);
      else if (now.status === 2) announce(`Failed: ${now.error}`);
      else announce(stageText(now));
    }
    if (history.some((entry) => entry.status === 0)) pollTimer = window.setTimeout(poll, POLL_MS);
  }

  function resume() {
    paused = false;
    if (!server.ready) checkServer();
    poll();
  }

  const current = () => history.find((entry) => entry.id === selected) || null;

  function select(id) {
    if (selected !== id) releaseSongs();
    selected = id;
    renderHistory();
    renderNow();
  }

  function stageText(entry) {
    if (entry.status === 1) return `Done: ${entry.songs.length} song${entry.songs.length === 1 ? "" : "s"}`;
    if (entry.status === 2) return "Failed";
    if (entry.stage === "queued") return entry.queue ? `Queued: position ${entry.queue}` : "Queued";
    return `${entry.stage.charAt(0).toUpperCase()}${entry.stage.slice(1)} ${Math.round(entry.progress * 100)} %`;
  }

  // rows are kept and updated in place (by task id), so a poll never takes the keyboard focus off a row
  const historyRows = new Map();

  function historyRow(entry) {
    let row = historyRows.get(entry.id);
    if (!row) {
      const title = el("span", { class: "title" });
      const facts = el("span", { class: "facts" });
      const open = el("button", { type: "button", class: "open", onclick: () => select(entry.id) }, title, facts);
      const remove = el("button", { type: "button", class: "quiet remove", text: "Remove",
                                    onclick: () => removeEntry(entry.id) });
      row = { item: el("li", { "data-id": entry.id }, open, remove), title, facts, open, remove };
      historyRows.set(entry.id, row);
    }
    const title = entry.caption || "(no caption)";
    const facts = [stageText(entry), entry.duration ? `${entry.duration} s` : null,
                   entry.batch ? `${entry.batch} × ${entry.format}` : entry.format, timeText(entry.created)];
    row.item.className = `history-item state-${entry.status}`;
    row.title.textContent = title;
    row.facts.textContent = facts.filter(Boolean).join(" · ");
    if (entry.id === selected) row.open.setAttribute("aria-current", "true");
    else row.open.removeAttribute("aria-current");
    row.remove.setAttribute("aria-label", `Remove “${title}” from the history`);
    return row.item;
  }

  function renderHistory() {
    const list = $("history-list");
    const items = history.map(historyRow);
    const kept = new Set(history.map((entry) => entry.id));
    for (const id of historyRows.keys()) if (!kept.has(id)) historyRows.delete(id);
    if (items.length !== list.children.length || items.some((item, i) => list.children[i] !== item)) {
      list.replaceChildren(...items); // only when a task came or went
    }
    $("history-empty").hidden = history.length > 0;
    $("clear-history").hidden = history.length === 0;
  }

  function removeEntry(id) {
    const index = history.findIndex((entry) => entry.id === id);
    if (index < 0) return;
    history.splice(index, 1);
    if (selected === id) { releaseSongs(); selected = history[0]?.id || null; }
    saveHistory();
    renderNow();
    announce("Removed from the history");
    ($("history-list").querySelector("button.open") || $("history-title")).focus?.();
  }

  $("clear-history").addEventListener("click", () => {
    history.splice(0);
    releaseSongs();
    selected = null;
    saveHistory();
    renderNow();
    announce("History cleared");
  });

  // --- listen: the selected task, its songs fetched (with the key), played from object URLs ------------------
  let shownSongsOf = null;
  let objectUrls = [];

  function releaseSongs() {
    for (const objectUrl of objectUrls) URL.revokeObjectURL(objectUrl);
    objectUrls = [];
    shownSongsOf = null;
    $("songs").replaceChildren();
  }

  function renderNow() {
    const entry = current();
    $("now-empty").hidden = Boolean(entry);
    $("now-task").hidden = !entry;
    if (!entry) return;
    $("now-caption").textContent = entry.caption || "(no caption)";
    const progress = $("task-progress");
    progress.value = entry.status === 1 ? 1 : entry.progress || 0;
    progress.dataset.state = ["running", "done", "failed"][entry.status];
    progress.setAttribute("aria-valuetext", stageText(entry));
    $("task-stage").textContent = stageText(entry);
    $("task-error").hidden = entry.status !== 2;
    $("task-error").textContent = entry.status === 2 ? entry.error : "";
    $("task-warnings").replaceChildren(...(entry.warnings || []).map((w) => el("li", { text: w })));
    if (entry.status === 1 && shownSongsOf !== entry.id) {
      releaseSongs();
      shownSongsOf = entry.id;
      $("songs").replaceChildren(...entry.songs.map((song, i) => songItem(entry, song, i)));
    }
  }

  function extensionOf(file) {
    const path = decodeURIComponent(String(file).split("path=")[1] || file);
    return (/\.([a-z0-9]+)$/i.exec(path)?.[1] || "mp3").toLowerCase();
  }

  function songItem(entry, song, index) {
    const name = `Song ${index + 1}`;
    const seedText = song.seed !== "" ? `seed ${song.seed}` : "";
    const metas = song.metas || {};
    const facts = [["Duration", metas.duration !== undefined && metas.duration !== "N/A" ? `${metas.duration} s` : null],
                   ["BPM", metas.bpm], ["Key", metas.keyscale], ["Time signature", metas.timesignature],
                   ["Format", extensionOf(song.file).toUpperCase()], ["Model", song.dit], ["LM", song.lm]]
      .filter(([, value]) => value !== null && value !== undefined && value !== "" && value !== "N/A");
    const canvas = el("canvas", { class: "wave", role: "img", "aria-label": `Waveform of ${name.toLowerCase()}` });
    const audio = el("audio", { controls: true, preload: "metadata", "aria-label": `${name}${seedText ? `, ${seedText}` : ""}` });
    const link = el("a", { class: "download", hidden: true });
    const note = el("p", { class: "note muted", text: "Loading…" });
    const item = el("li", { class: "song" },
      el("h3", {}, name, seedText ? el("span", { class: "seed", text: ` · ${seedText}` }) : null),
      canvas, audio,
      el("dl", { class: "metas" }, ...facts.map(([term, value]) => el("div", {}, el("dt", { text: term }),
                                                                        el("dd", { text: String(value) })))),
      el("div", { class: "song-actions" }, link, note));
    loadSong(entry, song, index, { audio, canvas, link, note, item });
    return item;
  }

  async function loadSong(entry, song, index, parts) {
    let blob;
    try {
      const response = await request(song.file, { raw: true });
      blob = await response.blob();
    } catch (err) {
      parts.note.textContent = err.status === 404
        ? "No longer on the server: finished songs are kept for a limited time (ACESTEP_RESULT_TTL)."
        : `Could not load this song: ${err.message}`;
      parts.item.classList.add("gone");
      parts.audio.hidden = true;
      parts.canvas.hidden = true;
      return;
    }
    if (shownSongsOf !== entry.id) return; // another task was opened meanwhile
    const objectUrl = URL.createObjectURL(blob);
    objectUrls.push(objectUrl);
    parts.audio.src = objectUrl;
    const ext = extensionOf(song.file);
    const slug = (entry.caption || "song").toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 40);
    parts.link.href = objectUrl;
    parts.link.download = `${slug || "song"}-${song.seed !== "" ? song.seed : index + 1}.${ext}`;
    parts.link.textContent = `Download song ${index + 1} (${ext.toUpperCase()}, ${bytesText(blob.size)})`;
    parts.link.hidden = false;
    parts.note.textContent = "";
    drawWave(blob, parts.canvas, parts.audio, parts.note);
  }

  // the waveform: the decoded audio's peaks, drawn on a canvas (and what has been played, shaded)
  async function drawWave(blob, canvas, audio, note) {
    if (blob.size > WAVE_MAX_BYTES) { note.textContent = "Too large to draw its waveform here."; return; }
    const Offline = window.OfflineAudioContext || window.webkitOfflineAudioContext;
    let buffer;
    try {
      buffer = await new Offline(1, 1, 48000).decodeAudioData(await blob.arrayBuffer());
    } catch {
      note.textContent = "This browser cannot decode this format to draw it; it may still play it.";
      return;
    }
    const peaks = new Float32Array(WAVE_BUCKETS);
    const per = buffer.length / WAVE_BUCKETS;
    for (let c = 0; c < buffer.numberOfChannels; c += 1) {
      const data = buffer.getChannelData(c);
      for (let b = 0; b < WAVE_BUCKETS; b += 1) {
        let peak = peaks[b];
        for (let i = Math.floor(b * per), end = Math.min(data.length, Math.floor((b + 1) * per)); i < end; i += 1) {
          const value = Math.abs(data[i]);
          if (value > peak) peak = value;
        }
        peaks[b] = Math.min(1, peak);
      }
    }
    const draw = () => paintWave(canvas, peaks, audio.duration ? audio.currentTime / audio.duration : 0);
    draw();
    canvas.dataset.drawn = "true";
    audio.addEventListener("timeupdate", draw);
    audio.addEventListener("seeked", draw);
    new ResizeObserver(draw).observe(canvas);
    canvas.addEventListener("click", (event) => {
      if (!audio.duration) return;
      const box = canvas.getBoundingClientRect();
      audio.currentTime = Math.max(0, Math.min(1, (event.clientX - box.left) / box.width)) * audio.duration;
    });
  }

  function paintWave(canvas, peaks, played) {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
    const style = getComputedStyle(canvas);
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, width, height);
    const bar = Math.max(1, Math.round(2 * ratio));
    const step = bar + Math.max(1, Math.round(ratio));
    const middle = height / 2;
    for (let x = 0; x < width; x += step) {
      const from = Math.floor((x / width) * peaks.length);
      const to = Math.max(from + 1, Math.floor(((x + step) / width) * peaks.length));
      let peak = 0;
      for (let i = from; i < to && i < peaks.length; i += 1) peak = Math.max(peak, peaks[i]);
      const half = Math.max(ratio / 2, peak * (middle - ratio));
      context.fillStyle = (x / width < played ? style.getPropertyValue("--wave-played")
                                              : style.getPropertyValue("--wave")).trim();
      context.fillRect(x, middle - half, bar, half * 2);
    }
  }

  // --- start ------------------------------------------------------------------------------------------------
  $("key-button").hidden = !auth.key; // a kept key can be changed or forgotten
  renderHistory();
  renderNow();
  checkServer();
  poll();
})();
