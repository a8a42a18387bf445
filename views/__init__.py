"""Views: rendering, overlays of two images and the report's HTML."""
