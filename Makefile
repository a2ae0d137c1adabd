# sim2real developer entry points.  `make` (or `make help`) lists the targets.
#
# DDS discovery stays on this host: tests, the sim and the bridges must never
# talk to (or be disturbed by) ROS 2 nodes elsewhere on the network.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Interpreter used to create the virtual environment (needs >= 3.11).
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp

# pip >= 25.3 always builds editable installs through PEP 660.  Older pips
# (Python 3.11's bundled 23.2.1) fall back to the legacy `setup.py develop`
# when `wheel` is importable, and that honours the packages' setup.cfg
# `[develop] script_dir=$base/lib/<pkg>`: console scripts then land in
# .venv/lib/<pkg>/ instead of .venv/bin/.  So pin a modern pip first.
PIP_VERSION := 26.3

PKGS := sim_bridge real_bridge policies calibration sim2real
REQS := requirements/runtime.txt requirements/test.txt requirements/train.txt requirements/ray.txt requirements/sysid.txt
PKG_META := $(foreach p,$(PKGS),$(p)/setup.py $(p)/setup.cfg $(p)/package.xml)

# Extra arguments: make test PYTEST_ARGS="-k randomization -x"
PYTEST_ARGS ?=
#                  make sim SIM_ARGS="--episodes 5 --gui"
SIM_ARGS ?=
#                  make colcon COLCON_ARGS="--symlink-install"
COLCON_ARGS ?=

.PHONY: help setup test test-fast sim train train-baselines colcon bench clean distclean

help: ## list the targets
	@echo "sim2real make targets:"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'
	@echo "variables: PYTEST_ARGS, SIM_ARGS, COLCON_ARGS, PYTHON (venv interpreter)"

setup: $(STAMP) ## create .venv, install pinned deps and the 5 packages (editable)

# Re-runs only when a requirements file or a package's metadata changes.
# Package *code* is installed editable, so code changes need no re-run.
$(STAMP): $(REQS) $(PKG_META)
	@test -x $(VPY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@# keep colcon from crawling into the venv if it is ever run from the repo root
	@touch $(VENV)/COLCON_IGNORE
	$(VPY) -m pip install --quiet --upgrade pip==$(PIP_VERSION)
	$(VPY) -m pip install -r requirements/test.txt -r requirements/train.txt -r requirements/sysid.txt
	@# the Ray backend (optional for users, needed by tests/ray); the pins above are constraints:
	@# it can never move torch, numpy or gymnasium
	$(VPY) -m pip install -r requirements/ray.txt -c requirements/runtime.txt -c requirements/train.txt
	@# --no-build-isolation: build the editable wheels with the pinned setuptools
	@# of the venv (no extra download); --no-deps: install_requires is only setuptools.
	@# editable_mode=compat: a plain .pth entry per package dir instead of
	@# setuptools' default import-hook finder.  With the finder, anything run
	@# from the repo root (`python -m pytest`, `python -c`) imports e.g. the
	@# *project dir* ./sim_bridge/ (no __init__.py) as an empty namespace
	@# package, shadowing the real sim_bridge/sim_bridge/ package.
	$(VPY) -m pip install --no-deps --no-build-isolation \
		--config-settings editable_mode=compat $(addprefix -e ,$(PKGS))
	@test -x $(VENV)/bin/sim2real || { echo "error: $(VENV)/bin/sim2real was not created" >&2; exit 1; }
	@touch $@

test: setup ## run the whole test suite
	$(VPY) -m pytest tests $(PYTEST_ARGS)

test-fast: setup ## run the tests that need neither DDS nor much time
	$(VPY) -m pytest tests -m "not ros and not slow" $(PYTEST_ARGS)

# The shipped policies (policies/policies/zoo/): seed 0, 8M env steps each (~15 min
# each on 2 cores), exported (parity-checked) and evaluated on 500 episodes of nominal
# and randomized physics; the command and config are recorded in each manifest.
TRAIN_STEPS ?= 8000000
TRAIN_ARGS ?=
ZOO := policies/policies/zoo
train: setup ## train the shipped reach LSTM policy (default randomization) into policies/policies/zoo/reach_lstm
	$(VENV)/bin/sim2real train --name reach_lstm --total-env-steps $(TRAIN_STEPS) --eval-episodes 500 \
		--export $(ZOO)/reach_lstm $(TRAIN_ARGS)

train-baselines: setup ## train the comparison policies: LSTM without randomization, randomized MLP
	$(VENV)/bin/sim2real train --name reach_lstm_nominal --randomization none \
		--total-env-steps $(TRAIN_STEPS) --eval-episodes 500 --export $(ZOO)/reach_lstm_nominal $(TRAIN_ARGS)
	$(VENV)/bin/sim2real train --name reach_mlp --architecture mlp \
		--total-env-steps $(TRAIN_STEPS) --eval-episodes 500 --export $(ZOO)/reach_mlp $(TRAIN_ARGS)

sim: setup ## run the simulation demo (SIM_ARGS=...)
	$(VENV)/bin/sim2real sim $(SIM_ARGS)

BENCH_STAMP := $(VENV)/.bench-stamp

bench: $(BENCH_STAMP) ## benchmark the env (vs bare MuJoCo) and training (vs sb3-contrib RecurrentPPO)
	$(VENV)/bin/sim2real bench env
	$(VENV)/bin/sim2real bench train

# The benchmark-only extras (sb3-contrib), kept out of `setup` so `make test` never needs
# them. The runtime/train pins are constraints: this install cannot move torch, numpy or
# gymnasium.
$(BENCH_STAMP): requirements/bench.txt $(STAMP)
	$(VPY) -m pip install -r requirements/bench.txt -c requirements/runtime.txt -c requirements/train.txt
	@touch $@

# colcon from the venv: no system ROS needed.  colcon-ros builds ament_python
# packages by running `python setup.py ...` with the interpreter that runs
# colcon (here .venv/bin/python, with the setuptools pinned in
# requirements/test.txt), so the generated executables under
# install/<pkg>/lib/<pkg>/ use the venv's python and see rclpy & co.
# A plain (copying) build is the default; --symlink-install also works.
# Use it:  source ros2_ws/install/setup.bash
colcon: setup ## build ros2_ws/ with colcon (COLCON_ARGS=--symlink-install ...)
	cd ros2_ws && ../$(VENV)/bin/colcon build $(COLCON_ARGS)

clean: ## remove build outputs and caches (keeps .venv)
	rm -rf ros2_ws/build ros2_ws/install ros2_ws/log .pytest_cache
	rm -rf $(addsuffix /build,$(PKGS)) $(foreach p,$(PKGS),$(p)/$(p).egg-info)
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## clean, and remove .venv too
	rm -rf $(VENV)
