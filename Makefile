# Thin wrapper over CMake/CTest. `make test` is what CI runs.
BUILD       ?= build
JOBS        ?= $(shell nproc)
# Tests at once: one more than the cores. The integration tests wait on their servers and child
# processes much of the time: on 2 cores, -j2 kept the machine 52 % busy (normal build) and
# -j3 took the suites from 362 to 283 s (normal), 352 to 295 s (ASan), 438 to 381 s (TSan).
TEST_JOBS   ?= $(shell echo $$(( $$(nproc) + 1 )))
CMAKE_FLAGS ?=
CTEST_FLAGS ?= --output-on-failure

.PHONY: all setup build test test-unit test-sanitize test-tsan fuzz demo bench clean

all: build

setup:
	@bash scripts/setup.sh

build: setup
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# Every test: ASan+UBSan and TSan builds of the suite, a short libFuzzer run of every fuzz
# target, then the normal build's suite.
# The normal build's CTest runs last, so its summary line closes the output.
test: build
	$(MAKE) --no-print-directory test-sanitize test-tsan fuzz
	cd $(BUILD) && ctest $(CTEST_FLAGS) -j $(TEST_JOBS)

test-unit: build
	cd $(BUILD) && ctest $(CTEST_FLAGS) -L unit

test-sanitize: setup
	cmake -S . -B build-asan -DK2P_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest $(CTEST_FLAGS) -j $(TEST_JOBS)

test-tsan: setup
	cmake -S . -B build-tsan -DK2P_TSAN=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && ctest $(CTEST_FLAGS) -j $(TEST_JOBS)

fuzz: setup
	CC=clang cmake -S . -B build-fuzz -DK2P_FUZZ=ON -DK2P_INTEGRATION=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-fuzz -j $(JOBS)
	cd build-fuzz && ctest $(CTEST_FLAGS) -L fuzz -j $(JOBS)

# The demo: kinesalite + a throw-away PostgreSQL, 10,000 sample records loaded and shown.
demo:
	@bash scripts/demo.sh

bench: setup ; @bash bench/run.sh
clean:
	rm -rf build build-asan build-tsan build-fuzz
