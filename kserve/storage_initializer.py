"""KServe's storage-initializer step: copy each SRC_URI into DEST_DIR with kserve-storage.

The same call as KServe's own `storage-initializer/scripts/initializer-entrypoint`
(`kserve_storage.Storage.download(src, dest)` per pair), so a `gs://` storageUri lands in
/mnt/models exactly as on a cluster; `STORAGE_EMULATOR_HOST` points it at a GCS emulator.
"""

import sys

from kserve_storage import Storage


def main(argv: list[str]) -> int:
    """Download each (source, destination) pair; 2 on a usage error."""
    if not argv or len(argv) % 2:
        print("usage: storage_initializer.py SRC_URI DEST_DIR [SRC_URI DEST_DIR ...]",
              file=sys.stderr)
        return 2
    for source, destination in zip(argv[::2], argv[1::2], strict=True):
        Storage.download(source, destination)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
