"""The local Kubernetes control plane for tests and the demo: see launcher.py and main.go."""
