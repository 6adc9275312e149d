"""One router per resource: search, images (originals and thumbnails), status."""
