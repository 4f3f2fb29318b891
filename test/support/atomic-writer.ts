// Writes files into a directory the way kubelet updates a Secret or projected volume (its
// AtomicWriter): the new contents go into a fresh hidden directory, a `..data` symlink is pointed at
// it by renaming a new symlink over it (one atomic step), each file is a symlink through `..data`, and
// the previous directory is then removed. A reader never sees a half-written file, and a path that
// was open or stat'ed before now resolves to a different inode.
import { randomBytes } from "node:crypto";
import { mkdir, readlink, rename, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";

export async function writeLikeKubelet(dir: string, files: Record<string, string>): Promise<void> {
  await mkdir(dir, { recursive: true });
  const previous = await readlink(join(dir, "..data")).catch(() => undefined);
  const version = `..${new Date().toISOString().replace(/[-:.]/g, "_")}.${randomBytes(4).toString("hex")}`;
  await mkdir(join(dir, version), { mode: 0o755 });
  for (const [name, text] of Object.entries(files))
    await writeFile(join(dir, version, name), text, { mode: 0o644 });
  await symlink(version, join(dir, "..data_tmp"));
  await rename(join(dir, "..data_tmp"), join(dir, "..data"));
  for (const name of Object.keys(files))
    await symlink(join("..data", name), join(dir, name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "EEXIST") throw err;
    });
  if (previous) await rm(join(dir, previous), { recursive: true, force: true });
}
