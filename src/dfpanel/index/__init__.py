"""Dataset adapters: FaceForensics++, Celeb-DF v2, DFDC, FakeAVCeleb and plain real/fake folders.

    from dfpanel.index import index_dataset, detect_layout, LAYOUT_NAMES
    records = index_dataset("/data/FaceForensics++")            # layout detected
    records = index_dataset(root, "dfdc", dfdc_chunks=10)

Each adapter lives in its own module and registers itself; importing them here fills the registry
in detection order (the most specific layouts first, the catch-all folder last).
"""

# Registration order is detection order: keep this line as it is (isort: skip).
from dfpanel.index import ffpp, celebdf, dfdc, fakeavceleb, folder  # noqa: F401, I001  # isort: skip
from dfpanel.index.base import LAYOUTS, IndexOptions, Layout, detect_layout
from dfpanel.index.indexer import index_dataset

LAYOUT_NAMES: tuple[str, ...] = tuple(LAYOUTS)

__all__ = ["LAYOUT_NAMES", "IndexOptions", "Layout", "detect_layout", "index_dataset"]
