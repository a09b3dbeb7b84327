// Shows which manager the page talks to.
import { escapeHTML } from "./http.js";

export function renderVersion(el, version) {
  el.innerHTML = `${escapeHTML(version.name)} ${escapeHTML(version.version)} <code>${escapeHTML(version.git)}</code>`;
  document.title = `${version.name} ${version.version}`;
}
