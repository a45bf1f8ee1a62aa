// Build the dashboard into the Python package: CesiumJS's prebuilt files from the npm
// package, and our page. No bundler: the page loads Cesium.js as a script.
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "starcompute", "gateway", "static");
const cesium = join(here, "node_modules", "cesium", "Build", "Cesium");
if (!existsSync(cesium)) {
  console.error("node_modules/cesium is missing: run `npm ci` in web/ first");
  process.exit(2);
}
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "cesium"), { recursive: true });
for (const part of ["Cesium.js", "Assets", "ThirdParty", "Widgets", "Workers"]) {
  cpSync(join(cesium, part), join(out, "cesium", part), { recursive: true });
}
for (const file of ["index.html", "app.js", "console.js", "style.css"]) {
  cpSync(join(here, "src", file), join(out, file));
}
const version = JSON.parse(readFileSync(join(here, "node_modules", "cesium", "package.json"))).version;
writeFileSync(join(out, "BUILD.json"), JSON.stringify({ cesium: version }) + "\n");
console.log(`dashboard built into ${out} (CesiumJS ${version})`);
