"""Small utilities every layer uses: errors, atomic files, progress reporting, disk space, images and PNG metadata."""
