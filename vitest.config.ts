// Tests run against the built CLI and app (npm test builds first) and against
// fixtures that qemu-img makes in test/global-setup.ts.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Most tests wait on qemu-img and vdisk child processes; a third test file in flight keeps both cores busy.
    maxWorkers: 3,
  },
});
