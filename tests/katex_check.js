// Render LaTeX with KaTeX, strictly, and report one error (or null) per string.
//
//   node katex_check.js KATEX_DIR
//
// Each line on stdin is a batch, a JSON list of {"src": "...", "display": true|false};
// each answer is one line on stdout, {"version": "...", "errors": [null | "message", ...]}.
// One process serves a whole test session, so a batch costs no start-up. Strict: input
// that LaTeX would reject is an error, and so is any warning KaTeX prints.
"use strict";
const readline = require("readline");
const katex = require(require.resolve("katex", { paths: [process.argv[2]] }));

const warnings = [];
console.warn = (...args) => warnings.push(args.join(" "));

function check({ src, display }) {
  warnings.length = 0;
  try {
    katex.renderToString(src, { throwOnError: true, displayMode: display, strict: "error" });
  } catch (err) {
    return String(err.message);
  }
  return warnings.length ? "warning: " + warnings.join("; ") : null;
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const errors = JSON.parse(line).map(check);
  process.stdout.write(JSON.stringify({ version: katex.version, errors }) + "\n");
});
