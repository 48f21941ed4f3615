import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The real-binary tier runs on its own (npm run test:kumod): it needs root, namespaces and KumoMTA's binaries.
    exclude: ["test/kumod/**", "**/node_modules/**"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
  },
});
