/**
 * ESLint for the whole tree (formatting is Prettier's, see .prettierrc.json): type-aware checks
 * that catch what review misses (floating promises, unused code), and the size limits the code
 * keeps: lines of at most 150 characters, functions of at most 60 lines in the service and 80 in
 * tests (describe bodies aside), at most four positional parameters in the service.
 */
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import local from './tools/eslint-rules.mjs';

const common = {
  'max-len': ['error', { code: 150, tabWidth: 2 }],
  'no-duplicate-imports': ['error', { allowSeparateTypeImports: true }],
  'prefer-const': 'error',
  eqeqeq: ['error', 'always', { null: 'ignore' }],
};

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'build/', '.tmp/'] },
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommended],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { local },
    rules: {
      ...common,
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': [
        'error',
        { checksVoidReturn: { arguments: false, attributes: false } },
      ],
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-explicit-any': 'error',
    },
  },
  {
    files: ['service/**/*.ts'],
    rules: {
      'max-lines-per-function': ['error', { max: 60, skipBlankLines: false, skipComments: false }],
      'max-params': ['error', 4],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      'local/max-lines-outside-describe': ['error', { max: 80 }],
      // Tests match aligned, column-formatted output: runs of spaces in their patterns are what they mean.
      'no-regex-spaces': 'off',
      'max-params': ['error', 6],
    },
  },
  {
    files: ['**/*.mjs', '**/*.cjs', '**/*.js'],
    extends: [js.configs.recommended],
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        require: 'readonly',
        module: 'writable',
        __dirname: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
      },
    },
    rules: { ...common, 'no-unused-vars': ['error', { argsIgnorePattern: '^_', caughtErrors: 'none' }] },
  },
);
