import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "libs/*/src/**/*.test.ts",
      "services/*/src/**/*.test.ts",
      "apps/*/src/**/*.test.ts",
      "bench/*/src/**/*.test.ts",
      "bench/*.test.ts",
      "cli/src/**/*.test.ts",
      "test/**/*.test.ts",
    ],
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    globalSetup: ["test/setup/global-setup.ts"],
  },
});
