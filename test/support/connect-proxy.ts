// An HTTP proxy on loopback, as a kubeconfig's proxy-url names one: it tunnels CONNECT requests to
// loopback targets (anything else gets 403) and records each tunnel's target. cut() ends every open
// tunnel at once, as a proxy restart would.
import { createServer, type Server } from "node:http";
import { connect, type Socket } from "node:net";

export class ConnectProxy {
  /** "host:port" of every tunnel asked for, in order. */
  readonly tunnels: string[] = [];
  readonly url: string;
  readonly #server: Server;
  readonly #open = new Set<Socket>();

  private constructor(server: Server, port: number) {
    this.#server = server;
    this.url = `http://127.0.0.1:${port}`;
  }

  static async start(): Promise<ConnectProxy> {
    const server = createServer((_req, res) => res.writeHead(405).end("CONNECT only"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const proxy = new ConnectProxy(server, (server.address() as { port: number }).port);
    server.on("connect", (req, client: Socket, head: Buffer) => proxy.#tunnel(req.url ?? "", client, head));
    return proxy;
  }

  #tunnel(target: string, client: Socket, head: Buffer): void {
    const [host, port] = target.split(":");
    this.#track(client);
    if (host !== "127.0.0.1" || !port) {
      client.end("HTTP/1.1 403 Forbidden\r\n\r\n");
      return;
    }
    this.tunnels.push(target);
    const upstream = connect(Number(port), host, () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    this.#track(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
  }

  #track(socket: Socket): void {
    this.#open.add(socket);
    socket.on("close", () => this.#open.delete(socket));
  }

  /** Ends every open tunnel (the proxy keeps listening). */
  cut(): void {
    for (const socket of this.#open) socket.destroy();
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
