// Bearer tokens that rotate while the controller runs. client-node reads a kubeconfig user's `token`
// once, when the file is loaded; it ignores client-go's `tokenFile` key (it knows only `token-file`,
// also read once), and only its in-cluster token provider reads a file again (every 60 s). Here the
// kubeconfig and the token file a user names are stat'ed on every API call (about 1.5 µs each) and
// read again when they changed: kubelet updates a mounted Secret by swapping a symlink to a new
// directory, so the path then resolves to a new inode, and the very next call (also the retry after a
// 401) carries the new token. Watches already open keep theirs; they re-open with the new one.
import { readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parse } from "yaml";

/** What a path resolves to now, symlinks followed: changes when the file is replaced or rewritten. */
export function fileVersion(path: string): string {
  const s = statSync(path, { bigint: true });
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
}

/** A file's parsed contents, read again when its version changes. */
export class FollowedFile<T> {
  readonly path: string;
  readonly #parse: (text: string) => T;
  #version: string | undefined;
  #value: { value: T } | undefined;

  constructor(path: string, parse: (text: string) => T) {
    this.path = path;
    this.#parse = parse;
  }

  /** The contents; throws when the file cannot be read or parsed now (the caller keeps what it had). */
  get(): T {
    const before = fileVersion(this.path);
    if (before !== this.#version || !this.#value) {
      this.#value = { value: this.#parse(readFileSync(this.path, "utf8")) };
      // Written between the stat and the read: read it again on the next call.
      this.#version = fileVersion(this.path) === before ? before : undefined;
    }
    return this.#value.value;
  }
}

/** What authenticates one kubeconfig user with a bearer token; `tokenFile` is absolute. */
export interface TokenCredential {
  token?: string;
  tokenFile?: string;
}

interface RawUser {
  name?: unknown;
  user?: Record<string, unknown> | null;
}

/**
 * The users of a kubeconfig that authenticate with a bearer token of their own (`token`, or
 * `tokenFile` as client-go spells it, or `token-file` as client-node does), by name. Users with an
 * exec plugin or an auth provider are left to client-node, which runs and refreshes those itself.
 * A relative tokenFile is relative to the kubeconfig's directory, as in client-go.
 */
export function tokenUsers(text: string, kubeconfigDir: string): Map<string, TokenCredential> {
  const doc = parse(text) as { users?: unknown } | null;
  const users = new Map<string, TokenCredential>();
  for (const raw of Array.isArray(doc?.users) ? (doc.users as RawUser[]) : []) {
    const user = raw?.user;
    if (typeof raw?.name !== "string" || !user || user.exec || user["auth-provider"]) continue;
    const file = user.tokenFile ?? user["token-file"];
    const tokenFile = typeof file === "string" && file ? resolve(kubeconfigDir, file) : undefined;
    const token = typeof user.token === "string" && user.token ? user.token : undefined;
    // client-go: when both are set, the file's token wins.
    if (tokenFile) users.set(raw.name, { tokenFile });
    else if (token) users.set(raw.name, { token });
  }
  return users;
}

/** A token file's token: surrounding whitespace (the newline `kubectl create token` prints) dropped. */
export function tokenText(text: string): string {
  const token = text.trim();
  if (!token) throw new Error("the token file is empty");
  return token;
}

/** One kubeconfig user's bearer token, following the kubeconfig file and the token file it names. */
export class UserToken {
  readonly user: string;
  readonly #config: FollowedFile<Map<string, TokenCredential>>;
  readonly #files = new Map<string, FollowedFile<string>>();
  #last: string | undefined;

  constructor(kubeconfigPath: string, user: string) {
    this.user = user;
    this.#config = new FollowedFile(kubeconfigPath, (text) => tokenUsers(text, dirname(kubeconfigPath)));
  }

  /** The token as the files hold it now; throws when they cannot be read. */
  read(): string | undefined {
    const credential = this.#config.get().get(this.user);
    if (!credential?.tokenFile) return credential?.token;
    let file = this.#files.get(credential.tokenFile);
    if (!file) {
      file = new FollowedFile(credential.tokenFile, tokenText);
      this.#files.set(credential.tokenFile, file);
    }
    return file.get();
  }

  /**
   * The token for the next call: the files' newest, or, while they cannot be read (a writer that is
   * not atomic, half done), the last one read; the API server is the judge of whether it still works.
   */
  current(): string | undefined {
    try {
      this.#last = this.read();
    } catch {
      // keep the last one
    }
    return this.#last;
  }
}

/** The token users of a kubeconfig file, each following it. */
export function followTokens(kubeconfigPath: string): Map<string, UserToken> {
  const users = tokenUsers(readFileSync(kubeconfigPath, "utf8"), dirname(kubeconfigPath));
  return new Map([...users.keys()].map((name) => [name, new UserToken(kubeconfigPath, name)]));
}
