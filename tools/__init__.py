"""Repository tools (not installed): tools/shapes makes the built-in world's weights."""
