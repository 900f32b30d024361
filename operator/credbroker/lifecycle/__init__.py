"""Renew before expiry, revoke what is replaced or unused, and sweep what a crash left."""
