"""The checkpoints bundled with ganserve, installed as package data (``ganserve.loading.bundled_dir``)."""
