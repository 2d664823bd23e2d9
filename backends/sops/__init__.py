"""The SOPS file format with age recipients; plaintext never reaches disk."""
