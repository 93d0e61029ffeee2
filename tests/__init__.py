"""berth's test suite; a package so that tests.cluster (the local control plane) is importable."""
