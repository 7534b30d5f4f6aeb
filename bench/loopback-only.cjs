// Preloaded into the Portkey gateway (node --require) by bench/run.py: Portkey's start-server
// listens on every interface and has no option to change that, so this makes every
// server.listen(port) in the process bind 127.0.0.1 only.
'use strict';
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (first !== null && typeof first === 'object' && !Array.isArray(first)) {
    if (first.path === undefined) args[0] = { ...first, host: '127.0.0.1' };
  } else if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    if (args.length < 2 || args[1] === undefined || args[1] === null || typeof args[1] === 'string') {
      args[1] = '127.0.0.1';
    } else if (typeof args[1] === 'function' || typeof args[1] === 'number') {
      args.splice(1, 0, '127.0.0.1');
    }
  }
  return listen.apply(this, args);
};

// Portkey 1.15.2 on Node fails every streamed chat completion with `TypeError: immutable`
// (Portkey-AI/gateway issues #1389 and #1550): @hono/node-server replaces the global
// Request/Response with "lightweight" classes, and a lightweight Response built from a fetch()
// Response keeps that response's immutable headers, which Portkey then appends to. With
// BENCH_NATIVE_FETCH_GLOBALS=1 the replacement is skipped, so Portkey gets Node's own classes.
if (process.env.BENCH_NATIVE_FETCH_GLOBALS === '1') {
  const defineProperty = Object.defineProperty;
  Object.defineProperty = function (target, key, descriptor) {
    if (target === globalThis && (key === 'Request' || key === 'Response')) return target;
    return defineProperty.call(this, target, key, descriptor);
  };
}
