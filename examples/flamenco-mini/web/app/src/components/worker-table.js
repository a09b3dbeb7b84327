// The table of workers known to the manager.
import { escapeHTML } from "./http.js";

export function ago(then, now) {
  const seconds = Math.max(0, Math.round((now - then) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  return `${Math.round(seconds / 3600)}h ago`;
}

export function renderWorkers(workers, now) {
  if (!workers.length) {
    return `<h2>Workers</h2><p class="empty">No workers have registered yet.</p>`;
  }
  const rows = workers.map((w) => `
    <tr class="worker status-${escapeHTML(w.status)}">
      <td class="name">${escapeHTML(w.name)}</td>
      <td><span class="status">${escapeHTML(w.status)}</span></td>
      <td>${escapeHTML(w.platform)}</td>
      <td title="${escapeHTML(w.last_seen)}">${ago(new Date(w.last_seen), now)}</td>
      <td><code>${escapeHTML(w.id.slice(0, 8))}</code></td>
    </tr>`).join("");
  return `<h2>Workers <small>(${workers.length})</small></h2>
    <table class="workers">
      <thead><tr><th>Name</th><th>Status</th><th>Platform</th><th>Last seen</th><th>ID</th></tr></thead>
      <tbody>${rows}</tbody>
    </table>`;
}
