// node:http as Node's CommonJS module rather than as an ES module: an ES module's namespace reads
// every export, and node:http's WebSocket, CloseEvent and MessageEvent exports are lazy getters that
// load Node's bundled undici (about 14 MB of RSS, for nothing the controller uses).
export const http = process.getBuiltinModule("node:http");
