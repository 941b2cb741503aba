# neuroglia5d: `make demo` runs the pipeline on generated sample data, `make test` runs the tests.
# Both create a virtual environment (.venv) unless one is active, and install what they need.
SHELL := /bin/bash
PYTHON ?= python3
ifdef VIRTUAL_ENV
  ENV := $(VIRTUAL_ENV)
else
  ENV := $(CURDIR)/.venv
endif
PY := $(ENV)/bin/python
STAMP := $(ENV)/.neuroglia5d-installed
DEMO_OUT ?= demo_output

# what napari needs to draw on a virtual display (Debian/Ubuntu package names)
SYSDEPS := xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 \
	libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 \
	libxcb-xinput0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1

.PHONY: demo test install lint bench bench-deps sysdeps sysdeps-browser clean

$(PY):
	$(PYTHON) -m venv $(ENV)

# reinstall when the dependencies change
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	@# without a GPU, a CPU build of PyTorch first (an unpinned torch pulls the CUDA one)
	@if ! command -v nvidia-smi >/dev/null 2>&1 && ! $(PY) -c "import torch" 2>/dev/null; then \
	  $(PY) -m pip install --quiet --timeout 10 --retries 1 torch \
	    --index-url https://download.pytorch.org/whl/cpu \
	  || $(PY) -m pip install --quiet "torch==2.13.0"; \
	fi
	$(PY) -m pip install --quiet -e ".[test]"
	@# NVIDIA's compiler (NVVM, and NVRTC that numba-cuda asks) for the test that compiles
	@# the GPU kernels without a GPU (tests/ng5d_gpu_check.py, NG5D_XP=ptx); on a GPU
	@# machine the gpu extra brings its own
	@if ! command -v nvidia-smi >/dev/null 2>&1; then \
	  $(PY) -m pip install --quiet "nvidia-nvvm==13.*" "nvidia-cuda-nvrtc==13.*"; \
	fi
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py --out $(DEMO_OUT)

lint: $(STAMP)
	$(ENV)/bin/ruff check src tests benchmarks examples

# a virtual X display with Mesa OpenGL for the napari tests
sysdeps:
	@if ! command -v xvfb-run >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(SYSDEPS); \
	fi

# headless Chromium + its WebDriver for the Neuroglancer browser test (Debian package names)
sysdeps-browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; \
	fi

test: $(STAMP) sysdeps sysdeps-browser
	$(ENV)/bin/ruff check src tests benchmarks examples
	$(ENV)/bin/npe2 validate napari-neuroglia5d
	xvfb-run -a -s "-screen 0 1280x1024x24" $(PY) -m pytest -q

# OpenCL on the CPU (PoCL) for the pyclesperanto baseline
bench-deps: $(STAMP)
	@if ! ls /etc/OpenCL/vendors/*.icd >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq pocl-opencl-icd; \
	fi
	$(PY) -m pip install --quiet -e ".[test,bench]"

bench: bench-deps
	$(PY) benchmarks/pipeline.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache
