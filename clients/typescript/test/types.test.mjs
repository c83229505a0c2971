// The committed types (src/generated/openapi.ts) must be what openapi-typescript makes of the
// OpenAPI document the running api serves at /openapi.json: a route or body changed in the
// api without `npm run generate` fails here.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { typesFor } from "../scripts/openapi-types.mjs";
import { startStack } from "./stack.mjs";

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

test("the committed types equal what openapi-typescript generates from the served /openapi.json", async () => {
  const resp = await fetch(`${stack.api}/openapi.json`);
  assert.equal(resp.status, 200);
  const served = await typesFor(await resp.json());
  const committed = await readFile(new URL("../src/generated/openapi.ts", import.meta.url), "utf8");
  assert.ok(served.includes('"/v1/sync"'), "the served document has the dashboard routes");
  if (committed !== served) {
    const [a, b] = [committed.split("\n"), served.split("\n")];
    const found = a.findIndex((l, i) => l !== b[i]);
    const line = found === -1 ? a.length : found;
    assert.fail(
      "src/generated/openapi.ts is out of date: run `npm run generate` in clients/typescript " +
        `(after regenerating /openapi.json). First difference at line ${line + 1}:\n` +
        `  committed: ${a[line] ?? "(end of file)"}\n  served:    ${b[line] ?? "(end of file)"}`,
    );
  }
});
