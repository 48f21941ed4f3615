/**
 * Reads of every connection land in one process-wide buffer (net.Socket's `onread` mode) instead of a fresh 64 KiB
 * ArrayBuffer per read pushed through a Readable stream. At 100 KiB messages those per-read allocations drove V8
 * into repeated full garbage collections; without them the sink needs about a third less CPU per message.
 */
import { type OnReadOpts, Socket, type SocketConstructorOpts } from "node:net";

/** Node's own read size: loopback rarely has more than this queued for one connection at once. */
const shared = Buffer.allocUnsafe(64 * 1024);

/** Called with a view of the bytes one read placed in the shared buffer; the next read overwrites them. */
export type OnRead = (chunk: Buffer) => void;

/**
 * Moves a connection accepted with `pauseOnConnect` onto a socket that reads into the shared buffer. net.Server has
 * no `onread` option, so the new socket takes over the accepted socket's handle; destroying the emptied original
 * releases the server's connection count without closing the connection.
 */
export function sharedReadSocket(accepted: Socket, onRead: OnRead): Socket {
  const original = accepted as unknown as { _handle?: object | null };
  const handle = original._handle;
  if (!handle) throw new Error("net.Socket keeps no _handle in this Node version; shared-read.ts needs updating");
  original._handle = null;
  accepted.destroy();
  const onread: OnReadOpts = {
    buffer: shared,
    callback: (nread) => {
      onRead(shared.subarray(0, nread));
      return true;
    },
  };
  return new Socket({ handle, onread } as SocketConstructorOpts);
}
