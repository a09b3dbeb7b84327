// Builds the Flamenco Mini webapp into ../static without any npm dependency.
//
//   node web/app/build.mjs
//
// - bundles src/main.js and the modules it imports (named ESM imports/exports only)
//   into one script, app.<hash>.js, each module in its own scope;
// - provides the virtual module "virtual:manager-api": the operations and models of
//   the JavaScript client that openapi-generator wrote into src/manager-api;
// - concatenates src/styles/*.css into app.css;
// - fills the bundle names into index.html.
// Comments, indentation and blank lines are dropped. The output folder is rebuilt from
// scratch, with the empty .keep that the repository commits there (see web/web.go).
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const srcDir = join(root, "src");
const outDir = resolve(root, "..", "static");
const started = performance.now();

function fail(msg) {
  console.error(`build.mjs: ${msg}`);
  process.exit(1);
}

function walk(dir) {
  return readdirSync(dir).sort().flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

// ---- the generated API client, as a virtual module ------------------------

function managerApiModule() {
  const clientDir = join(srcDir, "manager-api");
  if (!existsSync(join(clientDir, "ApiClient.js"))) {
    fail(`${relative(process.cwd(), clientDir)} holds no generated client: run the generate-js task first`);
  }
  const files = walk(clientDir).filter((f) => f.endsWith(".js"));
  const operations = [];
  for (const file of walk(join(clientDir, "api")).filter((f) => f.endsWith(".js"))) {
    const api = file.slice(file.lastIndexOf("/") + 1, -3);
    const code = readFileSync(file, "utf8");
    // Methods sit at four spaces; those that call the API are the operations.
    const methods = [...code.matchAll(/^ {4}(\w+)\([^)]*\) \{$/gm)];
    methods.forEach((m, i) => {
      const body = code.slice(m.index, i + 1 < methods.length ? methods[i + 1].index : code.length);
      const call = body.match(/callApi\(\s*'([^']+)', '(\w+)'/);
      // With usePromises=true the call sits in fooWithHttpInfo(), and foo() wraps it.
      if (call) operations.push({ api, name: m[1].replace(/WithHttpInfo$/, ""), path: call[1], method: call[2] });
    });
  }
  if (!operations.length) fail("found no operations in the generated client");
  const models = walk(join(clientDir, "model")).filter((f) => f.endsWith(".js"))
    .map((f) => f.slice(f.lastIndexOf("/") + 1, -3));
  operations.sort((a, b) => a.path.localeCompare(b.path) || a.method.localeCompare(b.method));
  return [
    `export const operations = ${JSON.stringify(operations)};`,
    `export const models = ${JSON.stringify(models)};`,
    `export const clientFiles = ${files.length};`,
  ].join("\n");
}

const virtualModules = { "virtual:manager-api": managerApiModule };

// ---- bundling -------------------------------------------------------------

const importRe = /^import\s*\{([^}]*)\}\s*from\s*["']([^"']+)["'];?[ \t]*$/gm;
const exportRe = /^export\s+(?:async\s+)?(?:function\*?|const|let|class)\s+(\w+)/gm;

const modules = new Map(); // id -> { id, code, imports: [{ names, from }], exports }
const order = []; // dependencies first

function load(id, importer, stack = []) {
  if (stack.includes(id)) fail(`import cycle: ${[...stack, id].join(" -> ")}`);
  if (modules.has(id)) return;
  let code;
  if (id in virtualModules) {
    code = virtualModules[id]();
  } else {
    if (!existsSync(id)) fail(`cannot find ${relative(root, id)}, imported by ${importer}`);
    code = readFileSync(id, "utf8");
  }
  if (/^\s*(import\s+[^{\s]|export\s+default|export\s*\{)/m.test(code)) {
    fail(`${relative(root, id)}: only "import { a } from" and "export function/const/let/class" are supported`);
  }
  const mod = { id, code, imports: [], exports: [...code.matchAll(exportRe)].map((m) => m[1]) };
  modules.set(id, mod);
  for (const m of code.matchAll(importRe)) {
    const from = m[2] in virtualModules ? m[2] : resolve(dirname(id), m[2]);
    const names = m[1].split(",").map((s) => s.trim()).filter(Boolean).map((s) => {
      const [name, alias] = s.split(/\s+as\s+/);
      return { name, alias: alias || name };
    });
    mod.imports.push({ names, from });
    load(from, relative(root, id), [...stack, id]);
  }
  order.push(mod);
}

function minify(code) {
  return code
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("//"))
    .join("\n");
}

load(join(srcDir, "main.js"), "build.mjs");
const varName = (id) => "$" + (id.startsWith("virtual:") ? id.slice(8) : relative(srcDir, id)).replace(/\W/g, "_");
const parts = ['"use strict";'];
for (const mod of order) {
  for (const imp of mod.imports) {
    const target = modules.get(imp.from);
    for (const { name } of imp.names) {
      if (!target.exports.includes(name)) fail(`${relative(root, mod.id)} imports ${name}, which ${imp.from} does not export`);
    }
  }
  const body = [
    ...mod.imports.map((imp) => `const { ${imp.names.map((n) => n.name === n.alias ? n.name : `${n.name}: ${n.alias}`).join(", ")} } = ${varName(imp.from)};`),
    mod.code.replace(importRe, "").replace(/^export\s+/gm, ""),
    `return { ${mod.exports.join(", ")} };`,
  ].join("\n");
  parts.push(`const ${varName(mod.id)} = (() => {\n${body}\n})();`);
}
const js = minify(`(() => {\n${parts.join("\n")}\n})();\n`) + "\n";

const cssFiles = walk(join(srcDir, "styles")).filter((f) => f.endsWith(".css"));
const css = minify(cssFiles.map((f) => readFileSync(f, "utf8")).join("\n")) + "\n";

// ---- output ---------------------------------------------------------------

const hash = createHash("sha256").update(js).digest("hex").slice(0, 10);
const jsName = `app.${hash}.js`;
const html = readFileSync(join(root, "index.html"), "utf8")
  .replace("%JS%", jsName)
  .replace("%CSS%", "app.css");

rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, ".keep"), "");
writeFileSync(join(outDir, jsName), js);
writeFileSync(join(outDir, "app.css"), css);
writeFileSync(join(outDir, "index.html"), html);

const ms = Math.round(performance.now() - started);
console.log(`build.mjs: ${order.length} modules -> ${jsName} (${js.length} bytes), ` +
  `${cssFiles.length} stylesheets -> app.css (${css.length} bytes), in ${ms} ms`);
