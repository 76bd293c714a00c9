"""
Development tooling, never shipped: the sandbox node (containerd and registries),
the demo, and a CRI test client.
"""
