/**
 * Local ESLint rules of this repository: the function-length rule for tests, which exempts the
 * bodies of `describe` blocks (they hold a suite's cases, not logic of their own).
 */

/** True when `fn` is the callback of `describe(…)`, `describe.only(…)` or `describe.skip(…)`. */
function isDescribeBody(fn) {
  const call = fn.parent;
  if (!call || call.type !== 'CallExpression' || !call.arguments.includes(fn)) return false;
  const callee = call.callee.type === 'MemberExpression' ? call.callee.object : call.callee;
  return callee.type === 'Identifier' && (callee.name === 'describe' || callee.name === 'context');
}

/** Functions longer than `max` lines, except `describe` bodies. */
const maxLinesOutsideDescribe = {
  meta: {
    type: 'suggestion',
    docs: { description: 'limit the length of functions other than describe bodies' },
    schema: [{ type: 'object', properties: { max: { type: 'integer', minimum: 1 } }, additionalProperties: false }],
    messages: { tooLong: '{{name}} has too many lines ({{lines}}). Maximum allowed is {{max}}.' },
  },
  create(context) {
    const max = context.options[0]?.max ?? 80;
    const check = (node) => {
      if (isDescribeBody(node)) return;
      const lines = node.loc.end.line - node.loc.start.line + 1;
      if (lines <= max) return;
      const name =
        node.id?.name ?? (node.parent?.type === 'MethodDefinition' ? `Method '${node.parent.key.name}'` : 'Function');
      context.report({ node, messageId: 'tooLong', data: { name, lines, max } });
    };
    return { FunctionDeclaration: check, FunctionExpression: check, ArrowFunctionExpression: check };
  },
};

export default { rules: { 'max-lines-outside-describe': maxLinesOutsideDescribe } };
