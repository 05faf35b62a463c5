// Lint: typescript-eslint with type information, plus the boundaries that keep the layers apart.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** What a shipped plugin may import besides its own files: the public API, as a third-party plugin would. */
const PLUGIN_BOUNDARY = {
  group: ['../../*', '../../../*', '**/core/**', '**/app/**'],
  message: "A plugin uses only upnpd's public API ('upnpd', 'upnpd/backend', 'upnpd/testing') and its own files.",
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/results/**', 'bench/tmp/**', 'test/.tmp*/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js', 'bin/*.js'] }, tsconfigRootDir: import.meta.dirname } },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/dist/**'], message: 'Import the sources, not the build.' }] }],
    },
  },
  {
    // The installed command: a plain Node script that starts the build.
    files: ['bin/*.js'],
    languageOptions: { globals: { process: 'readonly', setImmediate: 'readonly' } },
    rules: { 'no-restricted-imports': 'off' },
  },
  {
    // The core runs the plugins it is given: it never imports one (the public entry's re-exports aside).
    files: ['core/**/*.ts'],
    ignores: ['core/index.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['**/plugins/**', '!./plugins/**', '!../plugins/**'], message: 'core/ never imports a plugin: the composition root (app/) chooses them.' },
            { group: ['**/app/**'], message: 'core/ never imports the composition root.' },
          ],
        },
      ],
    },
  },
  {
    // Layers point down: the mapping lifecycle knows neither plugins nor protocols, the network layer knows no config.
    files: ['core/mapping/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['../plugins/*', '../upnp/*', '../upnp/**', '../daemon.js', '../config/*', '**/plugins/**', '**/app/**'],
              message: 'core/mapping depends on nothing above it.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['core/net/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['../config/*', '../plugins/*', '../mapping/*', '../upnp/*', '**/plugins/**', '**/app/**'],
              message: 'core/net depends on nothing above it.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['plugins/**/*.ts'],
    ignores: ['plugins/**/*.test.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [PLUGIN_BOUNDARY] }] },
  },
);
