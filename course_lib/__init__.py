"""Course helper library."""
