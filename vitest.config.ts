import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Each file starts its own servers on ephemeral ports; two workers match the CI machine.
    maxWorkers: 2,
    reporters: ["default", "./test/summary-reporter.ts"],
    // One real PostgreSQL cluster for the run; tests get databases on it via test/helpers/postgres.ts.
    globalSetup: ["./test/helpers/postgres-global-setup.ts"],
  },
});
