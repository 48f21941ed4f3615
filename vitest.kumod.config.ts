import { defineConfig } from "vitest/config";

// The real-binary tier (`npm run test:kumod`, started through test/kumod/run.ts): one cluster of processes at a time.
export default defineConfig({
  test: {
    include: ["test/kumod/**/*.test.ts"],
    testTimeout: 360_000,
    hookTimeout: 240_000,
    pool: "forks",
    fileParallelism: false,
  },
});
