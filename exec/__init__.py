"""The executive: the Totem process of ``corosync-exec`` and what it owns."""
