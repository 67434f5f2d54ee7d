# Two commands on a fresh machine: `make up` (a cluster) and `make test` (the test suite).
# Both install what they need first (apt packages and a venv; idempotent, as root).

VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR ?= $(CURDIR)/data
APT_PACKAGES := etcd-server etcd-client containerd runc containernetworking-plugins iptables nftables conntrack busybox-static iproute2 bsdutils util-linux debootstrap docker-registry skopeo
STAMP := $(VENV)/.installed

.PHONY: up test deps apt venv bench clean

deps: apt venv

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

up: deps
	$(VENV)/bin/kyb image build --out $(DATA_DIR)/images-built  # cached after the first time
	$(VENV)/bin/kyb server --data-dir $(DATA_DIR)

test: deps
	$(PY) -m pytest -q -p no:cacheprovider --durations=30 $(PYTEST_ARGS)

bench: deps
	$(PY) benchmarks/store.py

clean:
	rm -rf $(VENV) $(DATA_DIR) build *.egg-info
