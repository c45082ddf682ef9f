"""Text-to-patch retrieval (TextRS-style): sentence embeddings and patch descriptors in one learned space.

The sentence encoder (``encoder``) is imported lazily by callers that need it, so importing this package does
not load sentence-transformers.
"""

from eofusion.text2patch.model import (
    Text2PatchConfig,
    Text2PatchHistory,
    Text2PatchModel,
    Text2PatchNet,
    train_text2patch,
)
from eofusion.text2patch.vocabulary import (
    EUROSAT_CLASS_TEXTS,
    ClassText,
    Vocabulary,
    build_vocabulary,
    load_catalogue,
    readable_name,
)

__all__ = [
    "EUROSAT_CLASS_TEXTS",
    "ClassText",
    "Text2PatchConfig",
    "Text2PatchHistory",
    "Text2PatchModel",
    "Text2PatchNet",
    "Vocabulary",
    "build_vocabulary",
    "load_catalogue",
    "readable_name",
    "train_text2patch",
]
