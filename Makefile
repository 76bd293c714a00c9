# image-cri-shim: set up, test, demo.
#   make setup   .venv/ with the project installed (and, as root, Debian's containerd,
#                docker-registry and htpasswd for the sandbox node)
#   make test    set up, then run the whole trial suite
#   make demo    set up, then run the shim on a local sandbox node until Ctrl-C
#   make deb     the Debian package, built out of a copy of the tree, into build/deb/
#   make deb-test  as root: build, lint, install, run and purge the Debian package
#   make bench   as root: set up, then measure the shim against containerd itself and a
#                minimal Python proxy; prints the table, writes bench/results.md
#                (BENCH_SOAK=600 for the 10-minute soak; BENCH_ARGS for bench/run.py)
#   make bench-quick  as root: every bench phase, short (under a minute), to check it works
#   make bench-fleet  the ConfigMap client x 2,000 against an in-process API server, and one
#                idle real shim for 10 minutes: the "Fleet" section of bench/results.md (~20 min;
#                BENCH_ARGS=--quick for a 3-minute check whose report goes to the temp folder)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := containerd docker-registry apache2-utils protobuf-compiler
TEST_DEPS := hypothesis prometheus_client

.PHONY: setup test demo system-packages protos clean deb deb-test bench bench-quick bench-fleet

setup: system-packages $(VENV)/.installed

system-packages:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "note: missing Debian packages:$$missing (run as root to install them; the end-to-end tests skip without them)"; \
	  fi; \
	fi

$(VENV)/.installed: setup.py $(wildcard proto/runtime/*/api.proto cri_shim/*.py twisted/plugins/*.py)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q grpcio-tools $(TEST_DEPS)
	$(PY) setup.py -q build_protos
	$(PY) -m pip install -q --no-build-isolation .
	touch $@

protos:
	$(PY) setup.py -q build_protos

test: setup
	GRPC_VERBOSITY=ERROR GRPC_ENABLE_FORK_SUPPORT=false $(PY) -m twisted.trial --temp-directory=/tmp/ics-trial tests

demo: setup
	$(PY) -m dev.demo

deb:
	bash debian/ci/deb-test.sh build build/deb

deb-test:
	bash debian/ci/deb-test.sh

BENCH_SOAK ?= 60
BENCH_ARGS ?=
bench: setup
	GRPC_VERBOSITY=ERROR $(PY) bench/run.py --soak $(BENCH_SOAK) $(BENCH_ARGS)

bench-quick: setup
	GRPC_VERBOSITY=ERROR $(PY) bench/run.py --quick $(BENCH_ARGS)

bench-fleet: setup
	GRPC_VERBOSITY=ERROR $(PY) bench/fleet.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info cri_shim/_proto _trial_temp twisted/plugins/dropin.cache

include dev/tools.mk

include dev/kubelet.mk
