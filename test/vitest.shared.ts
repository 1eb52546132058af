// Settings the conformance tests need, for the top-level vitest config:
//   import shared from './test/vitest.shared.ts';
//   defineConfig({ test: { ...shared, ... } })
export const conformanceTestConfig = {
  globalSetup: ['test/global-setup.ts'],
  testTimeout: 60000,
};

export default conformanceTestConfig;
