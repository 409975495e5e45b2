// Fails when src/generated differs from what `npm run generate` makes of ../../proto now (CI runs it).
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const here = path.resolve(__dirname, "..");
const fresh = fs.mkdtempSync(path.join(os.tmpdir(), "ct-ts-gen-"));
try {
  const buf = path.join(here, "node_modules", ".bin", "buf");
  execFileSync(buf, ["generate", "../../proto", "--template", "buf.gen.yaml", "-o", fresh], { cwd: here, stdio: "inherit" });
  const stale = diff(path.join(fresh, "src", "generated"), path.join(here, "src", "generated"));
  if (stale.length > 0) {
    console.error(`the generated code is stale (${stale.join(", ")}): run \`npm run generate\` and commit it`);
    process.exit(1);
  }
  console.log("generated code is up to date");
} finally {
  fs.rmSync(fresh, { recursive: true, force: true });
}

/** Relative paths that differ between two trees, or exist in only one of them. */
function diff(a, b) {
  const files = (root) =>
    fs.existsSync(root) ? fs.readdirSync(root, { recursive: true }).filter((f) => fs.statSync(path.join(root, f)).isFile()) : [];
  const all = new Set([...files(a), ...files(b)]);
  return [...all].filter((f) => {
    const left = path.join(a, f);
    const right = path.join(b, f);
    return !fs.existsSync(left) || !fs.existsSync(right) || !fs.readFileSync(left).equals(fs.readFileSync(right));
  });
}
