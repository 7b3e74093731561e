"""1:N identification: a FAISS gallery of face features and the enrolment/identify service."""

from gallery.index import INDEX_TYPES, METRICS, GalleryCorruptError, GalleryIndex, GalleryMismatchError

__all__ = ["INDEX_TYPES", "METRICS", "GalleryCorruptError", "GalleryIndex", "GalleryMismatchError"]
