"""realtime_cms: a realtime collaborative CMS server."""

__version__ = "0.1.0"
