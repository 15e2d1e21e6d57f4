#!/bin/sh
# Enable the audit devices for the relay, in this order (needs a token with sudo on sys/audit):
# a file device first, so that Vault keeps answering when the relay is gone (a request is
# refused only when no device succeeds), then the relay's socket with a short write timeout
# (every request waits for every device, up to it). Run once the relay sidecars are up: Vault
# sends a test message on enable and refuses a device that does not take it.
set -eu
: "${VAULT_ADDR:?set VAULT_ADDR}"
if ! vault audit list -format=json 2>/dev/null | grep -q '"type": "file"'; then
  vault audit enable file file_path=stdout
fi
vault audit enable -path=syncd-relay socket \
  address=/vault/audit/relay.sock socket_type=unix write_timeout=250ms
vault audit list -detailed
# To remove: vault audit disable syncd-relay
