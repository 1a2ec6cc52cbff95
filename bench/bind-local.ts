// Preloaded into a peer gateway that listens on every interface (`node --import`): its
// servers listen on 127.0.0.1 instead, as everything the benches start must.
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function listenLocal(this: net.Server, ...args: unknown[]) {
  const [first, second] = args;
  if (typeof first === 'object' && first !== null && !Array.isArray(first)) args[0] = { ...first, host: '127.0.0.1' };
  else if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) { // (a non-numeric string is a pipe's path)
    if (typeof second === 'string') args[1] = '127.0.0.1';
    else args.splice(1, second === undefined ? 1 : 0, '127.0.0.1');
  }
  return (listen as (...a: unknown[]) => net.Server).apply(this, args);
} as typeof net.Server.prototype.listen;
