"""unsealer: unseal every Vault pod that comes back sealed, from split-custody shares."""
