"""Transport layer: aiohttp routes, Socket.IO namespaces and raw WebSockets over the services."""
