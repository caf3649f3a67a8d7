import preact from "@preact/preset-vite";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The built console ships inside the Python package: `nexxus dev` serves it at /admin/.
const outDir = fileURLToPath(new URL("../services/nexxus/console/static", import.meta.url));

export default defineConfig({
  base: "/admin/",
  plugins: [preact()],
  build: {
    outDir: process.env.NEXXUS_CONSOLE_OUT_DIR ?? outDir,
    emptyOutDir: true,
    sourcemap: false,
    target: "es2022",
  },
  server: {
    // `npm run dev` against a running `nexxus dev` (its REST edge on :8080).
    proxy: { "/v1": "http://127.0.0.1:8080" },
  },
});
