"""Use cases as plain functions; they own the transaction and raise identity.errors."""
