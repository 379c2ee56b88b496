/** Jest for the whole repository: unit specs beside the code, e2e suites in test/. */
const ESM_PACKAGES = [
  '@nestjs',
  'jose',
  'openid-client',
  'oauth4webapi',
  'oidc-provider',
  'quick-lru',
  'nanoid',
  'eta',
  'koa',
  '@koa',
  'file-type',
  'strtok3',
  'token-types',
  '@tokenizer',
  'uint8array-extras',
  '@borewit',
  'cookie',
  'content-disposition',
];

module.exports = {
  rootDir: '../..',
  testEnvironment: 'node',
  testMatch: ['<rootDir>/apps/**/*.spec.ts', '<rootDir>/libs/**/*.spec.ts', '<rootDir>/test/**/*.e2e-spec.ts'],
  moduleFileExtensions: ['ts', 'js', 'mjs', 'cjs', 'json'],
  transform: {
    '^.+\\.(t|j|mj|cj)s$': [
      '@swc/jest',
      {
        jsc: {
          parser: { syntax: 'typescript', decorators: true },
          transform: { legacyDecorator: true, decoratorMetadata: true },
          target: 'es2022',
          keepClassNames: true,
        },
        module: { type: 'commonjs', ignoreDynamic: false },
        sourceMaps: 'inline',
      },
    ],
  },
  transformIgnorePatterns: [`/node_modules/(?!(${ESM_PACKAGES.join('|')})/)`],
  moduleNameMapper: {
    '^@app/(common|config|database|events|testing)$': '<rootDir>/libs/$1/src',
    '^@app/(common|config|database|events|testing)/(.*)$': '<rootDir>/libs/$1/src/$2',
  },
  globalSetup: '<rootDir>/config/jest/global-setup.ts',
  globalTeardown: '<rootDir>/config/jest/global-teardown.ts',
  testTimeout: 60000,
  slowTestThreshold: 30,
};
