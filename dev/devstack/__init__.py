"""The local stack of `make dev`, `make test` and the benchmark, started and stopped from one
place."""
