// The upload page: plain JavaScript, no build step, no library, nothing fetched from outside this server.
"use strict";

const $ = (id) => document.getElementById(id);
const TRACK_COLOURS = ["#2457c5", "#e07a10", "#2b8a3e", "#8e3fb8", "#0f8a8a", "#b8860b"];
const SVG = "http://www.w3.org/2000/svg";  // the SVG namespace name, not a request

let maxUploadBytes = Infinity;  // the server's limit, from /v1/model; the server enforces it anyway

function show(element, visible) { element.hidden = !visible; }

function showError(message) {
  show($("progress"), false);
  $("error").textContent = message;
  show($("error"), true);
}

function setProgress(text, fraction) {
  show($("progress"), true);
  $("progress-text").textContent = text;
  $("progress").classList.toggle("busy", fraction === null);
  if (fraction !== null) $("bar-fill").style.width = `${Math.round(fraction * 100)}%`;
}

async function loadModel() {
  try {
    const model = await (await fetch("/v1/model")).json();
    const auc = model.metrics && model.metrics.video_auc;
    $("model").textContent = `model: ${model.name} v${model.version}` + (model.alias ? ` (@${model.alias})` : "")
      + ` · ${model.backbone}` + (auc != null ? ` · test video AUC ${auc.toFixed(3)}` : "");
    maxUploadBytes = model.limits.max_upload_mb * 1024 * 1024;
    $("limit").textContent = `up to ${model.limits.max_upload_mb} MB`;
  } catch (error) {
    $("model").textContent = "model: unknown (the server did not answer /v1/model)";
  }
}

function upload(file) {
  show($("error"), false);
  show($("result"), false);
  if (file.size > maxUploadBytes) {
    showError(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the limit is ${(maxUploadBytes / 1048576).toFixed(1)} MB.`);
    return;
  }
  const form = new FormData();
  form.append("file", file);
  const request = new XMLHttpRequest();  // XHR, not fetch: it reports upload progress
  request.open("POST", "/v1/predict?evidence=true");
  request.responseType = "json";
  request.upload.onprogress = (event) => {
    if (event.lengthComputable) setProgress(`Uploading ${file.name}: ${Math.round(100 * event.loaded / event.total)}%`, event.loaded / event.total);
  };
  request.upload.onload = () => setProgress(`Looking for faces and scoring them in ${file.name}…`, null);
  request.onerror = () => showError("The upload failed: the server could not be reached.");
  request.onload = () => {
    const body = request.response;
    if (request.status !== 200) {
      const detail = body && body.detail;
      showError(`${request.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail || "no answer")}`);
      return;
    }
    show($("progress"), false);
    showResult(body);
  };
  setProgress(`Uploading ${file.name}: 0%`, 0);
  request.send(form);
}

function showResult(row) {
  $("verdict").textContent = row.verdict;
  $("verdict").className = `verdict ${row.verdict}`;
  $("score").textContent = row.p_fake == null ? "no score" : `P(fake) ${row.p_fake.toFixed(3)} (threshold ${row.threshold.toFixed(3)})`;
  $("details").textContent = `${row.video}: ${row.frames} frames sampled, ${row.frames_with_face} with a face, `
    + `${row.faces} faces, ${row.tracks.length} ${row.tracks.length === 1 ? "person" : "people"} · model v${row.model_version}`;
  $("reason").textContent = row.reason || "";
  const evidence = row.evidence || { timeline: [], faces: [] };
  drawChart(evidence.timeline, row.threshold);
  drawFaces(evidence.faces, row.threshold);
  show($("result"), true);
}

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

function drawChart(points, threshold) {
  const chart = $("chart");
  chart.replaceChildren();
  if (!points.length) {
    chart.textContent = "No face was found, so there is nothing to chart.";
    return;
  }
  const width = 400, height = 200, left = 34, right = 10, top = 10, bottom = 26;  // viewBox units; scales to the screen
  const end = Math.max(...points.map((p) => p.time_s), 0.001);
  const x = (t) => left + (width - left - right) * t / end;
  const y = (p) => top + (height - top - bottom) * (1 - p);
  const svg = svgElement("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "P(fake) over time" });
  svg.append(svgElement("line", { class: "axis", x1: left, y1: y(0), x2: width - right, y2: y(0) }));
  svg.append(svgElement("line", { class: "axis", x1: left, y1: y(0), x2: left, y2: y(1) }));
  for (const p of [0, 0.5, 1]) svg.append(svgElement("text", { x: left - 5, y: y(p) + 4, "text-anchor": "end" }, p.toFixed(1)));
  svg.append(svgElement("text", { x: left, y: height - 6 }, "0 s"));
  svg.append(svgElement("text", { x: width - right, y: height - 6, "text-anchor": "end" }, `${end.toFixed(1)} s`));
  svg.append(svgElement("line", { class: "threshold", x1: left, y1: y(threshold), x2: width - right, y2: y(threshold) }));
  const tracks = [...new Set(points.map((p) => p.track))];
  for (const track of tracks) {
    const colour = TRACK_COLOURS[track % TRACK_COLOURS.length];
    const own = points.filter((p) => p.track === track);
    svg.append(svgElement("polyline", { fill: "none", stroke: colour, "stroke-width": 2,
      points: own.map((p) => `${x(p.time_s).toFixed(1)},${y(p.p_fake).toFixed(1)}`).join(" ") }));
    for (const p of own) {
      const dot = svgElement("circle", { cx: x(p.time_s).toFixed(1), cy: y(p.p_fake).toFixed(1), r: 3, fill: colour });
      dot.append(svgElement("title", {}, `${p.time_s.toFixed(2)} s, person ${p.track}: P(fake) ${p.p_fake.toFixed(3)}`));
      svg.append(dot);
    }
  }
  chart.append(svg);
}

function drawFaces(faces, threshold) {
  const strip = $("faces");
  strip.replaceChildren();
  if (!faces.length) {
    strip.textContent = "No face was found in the sampled frames.";
    return;
  }
  for (const face of faces) {
    const figure = document.createElement("figure");
    const heatmap = Object.assign(document.createElement("img"), { src: face.gradcam, className: "gradcam",
      alt: `Grad-CAM heatmap of the face at ${face.time_s.toFixed(2)} s` });
    const crop = Object.assign(document.createElement("img"), { src: face.image, className: "crop",
      alt: `face at ${face.time_s.toFixed(2)} s` });
    const caption = document.createElement("figcaption");
    const score = Object.assign(document.createElement("span"), { textContent: face.p_fake.toFixed(3),
      className: face.p_fake >= threshold ? "fake" : "" });
    caption.append(`${face.time_s.toFixed(2)} s · #${face.track} · `, score);
    figure.append(heatmap, crop, caption);
    strip.append(figure);
  }
}

function setUp() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => { if (event.target.files.length) upload(event.target.files[0]); });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (event) => { if (event.dataTransfer.files.length) upload(event.dataTransfer.files[0]); });
  $("show-heatmap").addEventListener("change", (event) => $("faces").classList.toggle("plain", !event.target.checked));
  loadModel();
}

setUp();
