// Entry point of the Flamenco Mini webapp.
import { getJSON } from "./components/http.js";
import { renderVersion } from "./components/version.js";
import { renderWorkers } from "./components/worker-table.js";
import { renderApiPanel } from "./components/api-panel.js";

const REFRESH_MS = 2000;

async function refreshWorkers() {
  const panel = document.getElementById("workers");
  try {
    const list = await getJSON("/api/v3/worker-mgt/workers");
    panel.innerHTML = renderWorkers(list.workers, new Date());
  } catch (err) {
    panel.innerHTML = `<h2>Workers</h2><p class="error">Cannot list workers: ${err.message}</p>`;
  }
}

async function start() {
  renderApiPanel(document.getElementById("api"));
  try {
    renderVersion(document.getElementById("version"), await getJSON("/api/v3/version"));
  } catch (err) {
    document.getElementById("version").textContent = `manager unreachable: ${err.message}`;
  }
  await refreshWorkers();
  setInterval(refreshWorkers, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", start);
