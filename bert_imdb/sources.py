"""Whether a model or dataset name means a local path or a Hugging Face Hub id: one rule for every place
that asks (loading models, loading IMDb, the model card)."""

from pathlib import Path


def looks_like_path(name: str) -> bool:
    """Meant as a local path, whether or not it exists: a Hub id is "name" or "org/name"."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1


def is_hub_id(name: str) -> bool:
    """A Hub id: neither meant as a path nor an existing local file or folder."""
    return not looks_like_path(name) and not Path(name).expanduser().exists()
