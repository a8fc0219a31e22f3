"""Unpacked layers and the overlayfs root filesystems stacked on them."""
