"""Wire-level emulations of the Vault HTTP API and the Kubernetes API.

Used by the tests, the demo and the benchmarks.

Neither a Vault server nor a kube-apiserver can be installed where this project is built and
tested, so the services are exercised against these emulations over real HTTP on loopback,
through the real client libraries (hvac, kubernetes-asyncio, kubectl). The services never import
this package; only tests, the demo and the benchmarks do.
"""
