"""Atomic, private file writes for the state directory."""
import os
import tempfile


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write data to path atomically: temp file in the same dir, fsync, rename.

    The temp file is created with `mode` from the start (mkstemp gives 0600),
    so private key material is never readable by others, even briefly.
    """
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    # Make the rename itself durable.
    dfd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
