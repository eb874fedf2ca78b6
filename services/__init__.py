"""Built-in service engines (cmap, cpg, votequorum, ...), each a plugin."""
