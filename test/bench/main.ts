/**
 * `npm run bench [-- latency|scale] [args]`: runs one benchmark (latency by default).
 */
const [which, ...rest] = process.argv.slice(2);
const name = which === 'scale' ? 'scale' : 'latency';
process.argv = [process.argv[0]!, process.argv[1]!, ...(which === 'scale' || which === 'latency' ? rest : process.argv.slice(2))];
await import(`./${name}.js`);
