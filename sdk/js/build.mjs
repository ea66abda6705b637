// Builds the two files the server serves at /sdk/: opsmetrics.js (a classic script that
// defines the global `opsmetrics`) and opsmetrics.mjs (an ES module). Both are committed;
// tests/test_sdk_browser.py rebuilds them and checks the bytes are the same.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const outDir = process.argv[2] ?? here("../../opsmetrics/web/sdk");
const banner = { js: "/* opsmetrics browser SDK, built from sdk/js/src by `make sdk`: do not edit */" };
const common = {
  entryPoints: [here("src/opsmetrics.js")],
  bundle: true,
  minify: true,
  target: "es2020",
  legalComments: "none",
  banner,
  logLevel: "warning",
};

await build({ ...common, format: "iife", globalName: "opsmetrics", outfile: `${outDir}/opsmetrics.js` });
await build({ ...common, format: "esm", outfile: `${outDir}/opsmetrics.mjs` });
