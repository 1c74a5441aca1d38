/**
 * `npm run bench [-- latency|scale|watch-bytes|locations-graph] [args]`: runs one benchmark (latency by
 * default), or draws the README picture of locations.
 */
const NAMES = ['latency', 'scale', 'watch-bytes', 'locations-graph'];
const [which, ...rest] = process.argv.slice(2);
const name = which && NAMES.includes(which) ? which : 'latency';
process.argv = [process.argv[0]!, process.argv[1]!, ...(which && NAMES.includes(which) ? rest : process.argv.slice(2))];
await import(`./${name}.js`);
