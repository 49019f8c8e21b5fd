"""Benchmarks: decode speed (generate), the server under load (serve), training throughput (train),
the scan kernels (kernels) and the prepared GPU run (gpu). Each module is one `scratchpad bench` command."""
