"""The plugin contract: hookspecs, the ServiceEngine protocol and the registry."""
