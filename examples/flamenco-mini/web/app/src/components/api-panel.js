// Lists the API operations and models, as found in the generated JavaScript client
// (web/app/src/manager-api, made by the generate-js task). build.mjs turns that
// client into the virtual module "virtual:manager-api".
import { operations, models, clientFiles } from "virtual:manager-api";
import { escapeHTML } from "./http.js";

export function renderApiPanel(el) {
  const ops = operations.map((op) =>
    `<li><code>${escapeHTML(op.method)} ${escapeHTML(op.path)}</code> ${escapeHTML(op.api)}.${escapeHTML(op.name)}</li>`).join("");
  el.innerHTML = `<h2>API</h2>
    <p>${operations.length} operations, ${models.length} models (${clientFiles} generated client files).</p>
    <ul class="operations">${ops}</ul>
    <p class="models">Models: ${models.map(escapeHTML).join(", ")}</p>`;
}
