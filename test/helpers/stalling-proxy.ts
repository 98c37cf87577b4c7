import { createServer, connect, type AddressInfo, type Socket } from "node:net";

/**
 * A TCP proxy in front of a server whose reading side can be stopped: a client behind it looks, to
 * the server, like one on a network that stopped taking data. (A grpc-js client that is merely
 * paused keeps reading the socket into its own buffers, so the server never sees it stall.)
 */
export async function stallingProxy(target: string): Promise<{ address: string; stall(): void; resume(): void; close(): Promise<void> }> {
  const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
  const upstreams: Socket[] = [];
  let stalled = false;
  const server = createServer((client) => {
    const upstream = connect(port, host);
    upstreams.push(upstream);
    if (stalled) upstream.pause();
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    stall: () => {
      stalled = true;
      for (const upstream of upstreams) upstream.pause();
    },
    resume: () => {
      stalled = false;
      for (const upstream of upstreams) upstream.resume();
    },
    close: async () => {
      for (const upstream of upstreams) upstream.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
