"""regionsearch: text search over image regions (SAM 2.1 masks + CLIP + FAISS).

Importing this package is cheap: torch, sam2, open_clip and faiss load only when used.
"""

from .config import Config, load_config
from .errors import RegionSearchError
from .types import ImageRecord, MaskCandidate, Region, SearchHit

__version__ = "0.1.0"

__all__ = ["Config", "load_config", "RegionSearchError", "ImageRecord", "MaskCandidate", "Region",
           "SearchHit", "__version__"]
