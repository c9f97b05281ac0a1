import { closeSync, constants, fchmodSync, fsyncSync, mkdtempSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Writes a whole file on the controller atomically, with the same guarantees as on hosts (temp file in
 * the same directory, fsync, rename, fsync the directory) and a temp name nobody else can claim:
 * the content goes into a new directory that `mkdtemp` creates exclusively, with a random name and
 * mode 0700, beside the target. Another local user who may write to the target's directory (a shared
 * `to:` path, /tmp) can therefore neither predict the temp name nor plant a symlink there that root
 * would follow and write a kubeconfig or key through, nor open the file while it is being filled.
 * A symlink at `path` itself is replaced by the rename, never followed. `mode` is set exactly (the
 * umask may only have narrowed it).
 *
 * @example
 * const merged = 'apiVersion: v1\nkind: Config\n';
 * writeLocalFileAtomic(`${process.env.HOME}/.kube/config`, merged, 0o600);
 */
export function writeLocalFileAtomic(path: string, content: string | Buffer, mode = 0o600): void {
  const dir = dirname(path);
  const scratch = mkdtempSync(join(dir, `.${basename(path)}.capstan-`));
  const temp = join(scratch, 'content');
  try {
    const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
    try {
      const bytes = Buffer.from(content);
      for (let written = 0; written < bytes.length; ) written += writeSync(fd, bytes, written);
      fchmodSync(fd, mode);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  syncDirectory(dir);
}

/** fsyncs a directory so a rename in it survives a crash; best effort (some filesystems refuse). */
function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    fsyncSync(fd);
  } catch {
    // Not every filesystem lets a directory be fsynced; the rename itself is still atomic.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
