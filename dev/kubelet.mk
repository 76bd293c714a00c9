# A real kubelet, pinned, for dev/kubelet_node.py and
# tests/conformance/test_kubelet.py: test tooling, never shipped, never
# committed.  Included from the Makefile.
#
#   make kubelet   the kubelet of Kubernetes $(KUBELET_VERSION), built with the
#                  machine's Go from the Go module proxy into .tools/bin/
#                  (dev/kubelet/build.sh says how); a second run is a no-op:
#                  the build leaves .tools/stamps/kubelet-VERSION.

KUBELET_TOOLS_DIR := $(CURDIR)/.tools
GO ?= /usr/local/go/bin/go
KUBELET_VERSION := v1.36.5

.PHONY: kubelet

kubelet: $(KUBELET_TOOLS_DIR)/stamps/kubelet-$(KUBELET_VERSION)

$(KUBELET_TOOLS_DIR)/stamps/kubelet-%:
	TOOLS_DIR=$(KUBELET_TOOLS_DIR) GO=$(GO) nice -n 19 bash dev/kubelet/build.sh $*
