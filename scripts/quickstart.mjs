// `npm start`: the built-in echo upstream on 8081 and `portico start` (proxy 8080, API 8888, admin 9901).
import { spawn } from 'node:child_process';

const bin = new URL('../bin/portico.js', import.meta.url).pathname;
const children = [
  spawn(process.execPath, [bin, 'echo', '--port', '8081', '--name', 'usersvc'], { stdio: 'inherit' }),
  spawn(process.execPath, [bin, 'start', ...process.argv.slice(2)], { stdio: 'inherit' }),
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
