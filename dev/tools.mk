# Test tooling, pinned, for the conformance suite (tests/conformance): never
# shipped, never committed.  Included from the Makefile.
#
#   make tools   crictl and critest (cri-tools), containerd 2.x with its runc
#                shim and ctr, built with the machine's Go from the Go module
#                proxy into .tools/bin/; the stand-in test image programs into
#                .tools/images/; and, as root, Debian's runc, CNI plugins,
#                iptables (for CNI portmap) and busybox-static; k8s.io/cri-api
#                into the Go module cache, linked from .tools/cri-api/VERSION
#                (tests/serve/test_proto_wire.py holds proto/ against it).  A
#                second run is a no-op: each leaves .tools/stamps/NAME-VERSION.

TOOLS_DIR := $(CURDIR)/.tools
GO ?= /usr/local/go/bin/go
CRI_TOOLS_VERSION := v1.37.0
CONTAINERD2_VERSION := v2.4.2
# The newest release of the CRI API (runtime.v1), and the newest that still
# ships runtime.v1alpha2 (dropped in v0.26).
CRI_API_VERSION := v0.37.2
CRI_API_V1ALPHA2_VERSION := v0.25.16
# The stand-in image programs are ours: their "version" is their sources' hash.
TOOLS_IMAGES_VERSION := $(shell cat dev/tools/build.sh dev/tools/images/*/*.go 2>/dev/null | sha256sum | cut -c1-12)
TOOLS_APT_PACKAGES := runc containernetworking-plugins iptables busybox-static

TOOLS_STAMPS := \
	$(TOOLS_DIR)/stamps/cri-tools-$(CRI_TOOLS_VERSION) \
	$(TOOLS_DIR)/stamps/containerd-$(CONTAINERD2_VERSION) \
	$(TOOLS_DIR)/stamps/cri-api-$(CRI_API_VERSION) \
	$(TOOLS_DIR)/stamps/cri-api-$(CRI_API_V1ALPHA2_VERSION) \
	$(TOOLS_DIR)/stamps/images-$(TOOLS_IMAGES_VERSION)

.PHONY: tools tools-packages

tools: tools-packages $(TOOLS_STAMPS)

tools-packages:
	@$(MAKE) --no-print-directory system-packages APT_PACKAGES="$(TOOLS_APT_PACKAGES)"

$(TOOLS_DIR)/stamps/cri-tools-%:
	TOOLS_DIR=$(TOOLS_DIR) GO=$(GO) bash dev/tools/build.sh cri-tools $*

$(TOOLS_DIR)/stamps/containerd-%:
	TOOLS_DIR=$(TOOLS_DIR) GO=$(GO) bash dev/tools/build.sh containerd $*

$(TOOLS_DIR)/stamps/cri-api-%:
	TOOLS_DIR=$(TOOLS_DIR) GO=$(GO) bash dev/tools/build.sh cri-api $*

$(TOOLS_DIR)/stamps/images-%:
	rm -f $(TOOLS_DIR)/stamps/images-*
	TOOLS_DIR=$(TOOLS_DIR) GO=$(GO) bash dev/tools/build.sh images $*
