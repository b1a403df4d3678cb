// `npm start`: the built-in echo upstream on 8081 and `portico run -c examples/quickstart.yaml` in front of it.
import { spawn } from 'node:child_process';

const bin = new URL('../bin/portico.js', import.meta.url).pathname;
const config = new URL('../examples/quickstart.yaml', import.meta.url).pathname;
const children = [
  spawn(process.execPath, [bin, 'echo', '--port', '8081', '--name', 'echo-1'], { stdio: 'inherit' }),
  spawn(process.execPath, [bin, 'run', '-c', config], { stdio: 'inherit' }),
];
const stop = () => children.forEach((child) => child.kill('SIGTERM'));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
for (const child of children) {
  child.on('exit', (code) => {
    stop();
    if (code) process.exitCode = code;
  });
}
