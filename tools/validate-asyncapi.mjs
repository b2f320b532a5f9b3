// Validates an AsyncAPI document with the official parser: `node validate-asyncapi.mjs FILE`.
// Prints every diagnostic as JSON lines; exits 1 when any is an error.
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const path = process.argv[2];
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(path, "utf8"));
for (const d of diagnostics) {
  console.log(JSON.stringify({ severity: d.severity, code: d.code, message: d.message, path: d.path }));
}
const errors = diagnostics.filter((d) => d.severity === 0);
if (!document || errors.length > 0) {
  console.error(`${errors.length} error(s)`);
  process.exit(1);
}
console.log(`valid AsyncAPI ${document.version()}: ${document.operations().length} operations`);
