"""syncd: mirror Vault KV secrets into Kubernetes Secrets and roll out the workloads using them."""
