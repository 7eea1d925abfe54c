"""Route groups of the gateway, one module per concern; ``server.app`` mounts them."""
