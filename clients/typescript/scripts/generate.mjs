// `npm run generate`: node scripts/generate.mjs <openapi.json path or URL> <output .ts file>
import { readFile, writeFile } from "node:fs/promises";
import { typesFor } from "./openapi-types.mjs";

const [source, output] = process.argv.slice(2);
if (!source || !output) {
  console.error("usage: node scripts/generate.mjs <openapi.json path or URL> <output.ts>");
  process.exit(2);
}
const text = /^https?:\/\//.test(source)
  ? await (await fetch(source)).text()
  : await readFile(source, "utf8");
await writeFile(output, await typesFor(JSON.parse(text)));
console.log(`wrote ${output} from ${source}`);
