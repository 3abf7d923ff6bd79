"""DreamBooth training: data caching, adapters, checkpoints and the loop."""

from dbooth.training.loop import train

__all__ = ["train"]
