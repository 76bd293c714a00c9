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
#   make mutate  mutation testing (mutmut; long, not in CI): each module of the pure model and
#                the request path mutated against the tests its test-case-name line names,
#                niced, one worker; prints each score, keeps state, log and survivors in
#                .mutmut/ (MUTATE=cri_shim/model/rewrite.py for one module; SURVIVORS=1
#                re-runs only the last run's survivors, e.g. after adding tests)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := containerd docker-registry apache2-utils protobuf-compiler
TEST_DEPS := hypothesis prometheus_client

.PHONY: setup test demo system-packages protos clean deb deb-test bench bench-quick bench-fleet mutate

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

MUTMUT := mutmut==2.5.1
MUTATE ?= $(filter-out %/__init__.py,$(wildcard cri_shim/model/*.py cri_shim/serve/*.py))
# A mutant counts as caught when its tests fail or run 10 times longer than unmutated.
MUTATE_SCORE := import sqlite3, sys; \
	n = dict(sqlite3.connect(sys.argv[1]).execute("select status, count(*) from Mutant group by status")); \
	caught = n.get("ok_killed", 0) + n.get("ok_suspicious", 0) + n.get("bad_timeout", 0); \
	total = sum(n.values()) - n.get("skipped", 0); \
	print("{}: {}/{} caught ({:.1f}%), {} survived, {} untested".format(sys.argv[2], caught, total, \
	      100.0 * caught / max(total, 1), n.get("bad_survived", 0), n.get("untested", 0)))

mutate: setup
	$(PY) -m pip install -q $(MUTMUT)
	@mkdir -p .mutmut
	@for m in $(MUTATE); do \
	  state=.mutmut/$$(basename $$(dirname $$m)).$$(basename $$m .py); \
	  if [ -f $$state.sqlite ]; then cp $$state.sqlite .mutmut-cache; else rm -f .mutmut-cache; fi; \
	  ids=$(if $(SURVIVORS),$$($(VENV)/bin/mutmut result-ids survived),all); \
	  for id in $$ids; do \
	    GRPC_VERBOSITY=ERROR GRPC_ENABLE_FORK_SUPPORT=false nice -n 19 $(VENV)/bin/mutmut run \
	      --paths-to-mutate $$m --tests-dir tests/$$(basename $$(dirname $$m)) --simple-output --no-progress \
	      --runner "$(abspath $(PY)) -m twisted.trial --temp-directory=$(abspath .mutmut/trial) --testmodule=$$m" \
	      $$(test $$id = all || echo $$id); \
	  done >$$state.log 2>&1; \
	  for id in $$($(VENV)/bin/mutmut result-ids survived); do $(VENV)/bin/mutmut show $$id; done >$$state.survivors; \
	  mv .mutmut-cache $$state.sqlite; \
	  $(PY) -c '$(MUTATE_SCORE)' $$state.sqlite $$m; \
	done

clean:
	rm -rf $(VENV) build dist *.egg-info cri_shim/_proto _trial_temp twisted/plugins/dropin.cache .mutmut .mutmut-cache

include dev/tools.mk

include dev/kubelet.mk
