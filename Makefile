# Sandflow: every set-up step is here. `make run` and `make test` work on a fresh Debian 12.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_GEN  := -G Ninja

.PHONY: all deps configure build microvm-image test test-release test-asan run bench format clean

all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/build.ninja: | deps
	cmake -S . -B $(BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo

configure: deps $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# The microvm backend's guest image (part of `build` too): scripts/microvm-image.sh.
microvm-image: configure
	cmake --build $(BUILD) -j $(JOBS) --target microvm_image

# All tests: the optimised build, then the same suite under AddressSanitizer + UBSan.
test: test-release test-asan

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

$(ASAN_BUILD)/build.ninja: | deps
	cmake -S . -B $(ASAN_BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DSANDFLOW_SANITIZE=ON

test-asan: deps $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)

# The main job: runs the example actors through the binary.
run: build
	@bash scripts/run-examples.sh $(BUILD)/sandflow

bench: build
	$(BUILD)/bench/sandflow_bench
	$(BUILD)/bench/sandflow_server_bench
	$(BUILD)/bench/flow_bench
	$(BUILD)/bench/sandbox_bench
	$(BUILD)/bench/gvisor_bench
	$(BUILD)/bench/state_bench

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
