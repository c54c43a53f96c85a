#!/usr/bin/env bash
# test_packaging.sh - exercises on the host what docker/Dockerfile does in the image, since no
# Docker engine runs in CI:
#   1. docker/*.sh parse; docker/build-deps.sh finds everything installed (installs as root);
#   2. docker/build.sh: a Release build installed (stripped) into a temporary DESTDIR;
#   3. docker/smoke.sh on the installed programs (versions, usage errors, exit codes);
#   4. docker/runtime-deps.sh against the binaries: every library they load (ldd) comes from a
#      listed package (dpkg -S), from a package those depend on, or from the base image; every
#      listed library package is used;
#   5. the health check script against a local HTTP server and a fake /proc;
#   6. the Dockerfile (stages, scripts it runs exist, labels, user, entrypoint, version), its
#      .dockerignore, compose.yaml and the Kubernetes manifests (YAML parses, kinds, probes,
#      security context, flags accepted by the real binary's --help);
#   7. `kubectl kustomize docker/k8s` renders, when kubectl is installed.
#
# CTest runs it with K2P_SOURCE_DIR (and K2P_BINARY_DIR); it can also run by hand:
#   bash tests/integration/test_packaging.sh
# K2P_PACKAGING_BUILD_DIR=DIR reuses a build directory (faster); default a fresh temporary one.
set -uo pipefail

src=${K2P_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
src=$(cd "$src" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/k2p-packaging.XXXXXX")
http_pid=
cleanup() {
    [ -n "$http_pid" ] && kill "$http_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
skip() { skipped=$((skipped + 1)); echo "skip $*"; }
section() { echo; echo "== $* (at $(($(date +%s) - t_start)) s)"; }
t_start=$(date +%s)

# The test builds its own Release tree, so what it checks does not depend on the build that
# runs it: under the sanitizer and fuzz builds of `make test` it would only repeat itself.
cache=${K2P_BINARY_DIR:-/nonexistent}/CMakeCache.txt
if [ -f "$cache" ] && grep -Eq '^K2P_(SANITIZE|TSAN|FUZZ):BOOL=(ON|1|TRUE)' "$cache"; then
    echo "skip: run from an instrumented build ($K2P_BINARY_DIR); the normal build runs it"
    echo "test_packaging: 0 passed, 0 failed, 1 skipped"
    exit 0
fi

cd "$src" || exit 1
version=$(sed -n 's/^project(kinesis2pg VERSION \([0-9][0-9.]*\).*/\1/p' CMakeLists.txt)
[ -n "$version" ] || { echo "cannot read the version from CMakeLists.txt"; exit 1; }

# ------------------------------------------------------------------------------------------
section "scripts"
for f in build-deps.sh build.sh runtime-deps.sh smoke.sh healthcheck.sh; do
    if [ ! -f "docker/$f" ]; then
        fail "docker/$f is missing"
    elif bash -n "docker/$f" 2>"$work/syntax"; then
        pass "docker/$f parses"
    else
        fail "docker/$f: $(cat "$work/syntax")"
    fi
done
if bash docker/build-deps.sh >"$work/deps.log" 2>&1; then
    pass "docker/build-deps.sh: $(tail -1 "$work/deps.log")"
else
    fail "docker/build-deps.sh: $(tail -3 "$work/deps.log")"
fi
build_pkgs=$(bash docker/build-deps.sh --print)
if grep -q -- '-dev$' <<<"$build_pkgs"; then
    pass "docker/build-deps.sh --print lists the -dev packages"
else
    fail "docker/build-deps.sh --print lists no -dev package"
fi

# What CMake looks for (pkg_check_modules, find_library, find_path) must come from a package
# that build-deps.sh installs: a new dependency missing there breaks only the image's build,
# which CI cannot run.
if command -v dpkg >/dev/null 2>&1 && command -v pkg-config >/dev/null 2>&1; then
    declare -A build_listed=()
    for p in $build_pkgs; do build_listed[$p]=1; done
    multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
    cm_files=$(find CMakeLists.txt tests bench -name CMakeLists.txt -not -path '*/node_modules/*' 2>/dev/null)
    # "kind what file" for each requirement
    reqs=$(sed -n -e 's/.*pkg_check_modules([A-Za-z0-9_]* REQUIRED IMPORTED_TARGET \([^ )]*\).*/pc \1/p' \
                  -e 's/.*find_library([A-Za-z0-9_]* \([^ )]*\) REQUIRED.*/lib \1/p' \
                  -e 's/.*find_path([A-Za-z0-9_]* \([^ )]*\) REQUIRED.*/hdr \1/p' $cm_files | sort -u)
    while read -r kind what; do
        [ -n "$kind" ] || continue
        case "$kind" in
            pc) file=$(pkg-config --variable=pcfiledir "$what" 2>/dev/null)/$what.pc ;;
            lib) file=/usr/lib/$multiarch/lib$what.so ;;
            hdr) file=/usr/include/$what ;;
        esac
        if ! owner_line=$(dpkg -S "$file" 2>/dev/null); then
            fail "CMake needs $kind $what ($file): no Debian package ships it here"
            continue
        fi
        pk=${owner_line%%: *}
        pk=${pk%%,*}
        pk=${pk%%:*}
        if [ -n "${build_listed[$pk]:-}" ]; then
            pass "CMake needs $kind $what: $pk, in docker/build-deps.sh"
        else
            fail "CMake needs $kind $what from $pk: add it to docker/build-deps.sh"
        fi
    done <<<"$reqs"
else
    skip "build dependency check: needs dpkg and pkg-config"
fi

# ------------------------------------------------------------------------------------------
section "docker/build.sh (Release, stripped, DESTDIR)"
build=${K2P_PACKAGING_BUILD_DIR:-$work/build}
root=$work/root
bin=$root/usr/local/bin
t0=$(date +%s)
if bash docker/build.sh --build-dir "$build" --prefix /usr/local --destdir "$root" --jobs 2 \
        >"$work/build.log" 2>&1; then
    pass "docker/build.sh built and installed in $(($(date +%s) - t0)) s"
else
    fail "docker/build.sh failed:"
    tail -30 "$work/build.log"
    echo "test_packaging: $passed passed, $failed failed, $skipped skipped"
    exit 1
fi
installed=$(cd "$root" && find . -type f -o -type l | sort | tr '\n' ' ')
want="./usr/local/bin/kinesis2pg ./usr/local/bin/kinesis2pg-healthcheck ./usr/local/bin/kinesis2pg-produce "
if [ "$installed" = "$want" ]; then
    pass "installed exactly: $installed"
else
    fail "installed files: '$installed', want '$want'"
fi
for f in kinesis2pg kinesis2pg-produce; do
    sections=$(readelf -S "$bin/$f" 2>&1)
    if grep -q '\.symtab' <<<"$sections"; then
        fail "$f is not stripped"
    else
        pass "$f is stripped ($(stat -c %s "$bin/$f") bytes)"
    fi
done

# ------------------------------------------------------------------------------------------
section "docker/smoke.sh on the installed programs"
if bash docker/smoke.sh "$bin" --expect-version "$version" >"$work/smoke.log" 2>&1; then
    pass "docker/smoke.sh: $(tail -1 "$work/smoke.log")"
else
    fail "docker/smoke.sh:"
    cat "$work/smoke.log"
fi

# ------------------------------------------------------------------------------------------
section "docker/runtime-deps.sh covers what the binaries load"
mapfile -t runtime < <(bash docker/runtime-deps.sh)
if ((${#runtime[@]})); then
    pass "runtime packages: ${runtime[*]}"
else
    fail "docker/runtime-deps.sh printed no package"
fi
if bash docker/runtime-deps.sh --check 2>"$work/rcheck"; then
    pass "docker/runtime-deps.sh --check: all installed here"
else
    fail "docker/runtime-deps.sh --check: $(cat "$work/rcheck")"
fi
for p in "${runtime[@]}"; do
    case "$p" in
        *-dev|gcc|make|cmake|pkg-config|build-essential) fail "runtime package $p is a build tool" ;;
    esac
done

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v ldd >/dev/null 2>&1; then
    skip "library check: needs dpkg and ldd (a Debian host)"
else
    declare -A listed=() base=() closure=() seen=()
    for p in "${runtime[@]}"; do listed[$p]=1; done

    # One dpkg query: every installed package, its dependencies (Pre-Depends and Depends,
    # alternatives included, versions and :any dropped), whether it is in the base image
    # (debian:12-slim holds the Essential and Priority: required packages).
    declare -A deps=()
    required=()
    while IFS=$'\t' read -r p st d ess prio; do
        [ "${st:0:2}" = ii ] || continue
        deps[$p]=$(tr ',|' '  ' <<<"$d" | sed 's/([^)]*)//g; s/:any//g')
        if [ "$ess" = yes ] || [ "$prio" = required ]; then required+=("$p"); fi
    done < <(dpkg-query -W -f='${Package}\t${db:Status-Abbrev}\t${Pre-Depends}, ${Depends}\t${Essential}\t${Priority}\n')
    # closure NAME PKG...: fills the associative array NAME with PKG... and what they depend on.
    closure_of() {
        local -n acc=$1
        shift
        local queue=("$@") p d
        while ((${#queue[@]})); do
            p=${queue[-1]}
            unset 'queue[-1]'
            [ -n "${acc[$p]:-}" ] && continue
            acc[$p]=1
            for d in ${deps[$p]:-}; do
                [ -n "${deps[$d]+x}" ] && [ -z "${acc[$d]:-}" ] && queue+=("$d")
            done
        done
    }
    closure_of base "${required[@]}"
    closure_of closure "${runtime[@]}"

    # Which package ships each library the programs load: one `dpkg -S` for all of them,
    # asked under each spelling of the path (as ldd found it, resolved, /lib <-> /usr/lib).
    declare -A owner=()
    cands=()
    for f in kinesis2pg kinesis2pg-produce; do
        ldd "$bin/$f" >"$work/ldd.$f" 2>&1 || fail "ldd $f: $(cat "$work/ldd.$f")"
        while read -r path; do
            for c in "$path" "$(readlink -f "$path")"; do
                cands+=("$c" "/usr$c" "${c#/usr}")
            done
        done < <(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' "$work/ldd.$f")
    done
    while IFS= read -r line; do
        pk=${line%%: *}
        pk=${pk%%,*}
        owner[${line#*: }]=${pk%%:*}
    done < <(printf '%s\n' "${cands[@]}" | sort -u | xargs -r dpkg -S 2>/dev/null)
    pkg_of() {
        local c r
        for c in "$1" "$(readlink -f "$1")"; do
            for r in "$c" "/usr$c" "${c#/usr}"; do
                if [ -n "${owner[$r]:-}" ]; then echo "${owner[$r]}"; return 0; fi
            done
        done
        return 1
    }

    for f in kinesis2pg kinesis2pg-produce; do
        # Direct NEEDED libraries: from a listed package, or from the base image.
        for so in $(readelf -d "$bin/$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
            path=$(awk -v so="$so" '$1 == so && $2 == "=>" {print $3}' "$work/ldd.$f")
            if [ -z "$path" ] || [ "$path" = "not" ]; then
                fail "$f needs $so, which ldd does not find"
                continue
            fi
            if ! pkg=$(pkg_of "$path"); then
                fail "$f needs $so ($path), which no Debian package ships"
            elif [ -n "${listed[$pkg]:-}" ]; then
                pass "$f needs $so: package $pkg, listed"
            elif [ -n "${base[$pkg]:-}" ]; then
                pass "$f needs $so: package $pkg, in the base image"
            else
                fail "$f needs $so from package $pkg: add it to docker/runtime-deps.sh"
            fi
        done
        # Everything ldd loads, transitively.
        while read -r path; do
            if ! pkg=$(pkg_of "$path"); then
                fail "$f loads $path, which no Debian package ships"
                continue
            fi
            seen[$pkg]=1
            if [ -z "${listed[$pkg]:-}" ] && [ -z "${closure[$pkg]:-}" ] && [ -z "${base[$pkg]:-}" ]; then
                fail "$f loads $path from $pkg: neither listed, nor a dependency of a listed package, nor in the base image"
            fi
        done < <(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' "$work/ldd.$f")
    done
    pass "every library the programs load comes from a listed package, a dependency of one, or the base image (${#seen[@]} packages)"
    for p in "${runtime[@]}"; do
        case "$p" in
            lib*) if [ -n "${seen[$p]:-}" ]; then pass "listed $p is used"
                  else echo "note: listed $p ships no library the programs load (remove it?)"; fi ;;
        esac
    done
fi

# ------------------------------------------------------------------------------------------
section "health check (docker/healthcheck.sh as installed)"
hc=$bin/kinesis2pg-healthcheck
py=
for c in python3 /usr/bin/python3; do
    if command -v "$c" >/dev/null 2>&1; then py=$c; break; fi
done
if [ -z "$py" ]; then
    skip "health check: no python3 for a local HTTP server"
else
    mkdir -p "$work/www" "$work/proc/1" "$work/proc/2"
    echo ok >"$work/www/healthz"
    (cd "$work/www" && exec "$py" -m http.server 0 --bind 127.0.0.1) >"$work/http.log" 2>&1 &
    http_pid=$!
    port=
    for _ in $(seq 100); do
        port=$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$work/http.log" | head -1)
        [ -n "$port" ] && break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        fail "health check: the local HTTP server did not start: $(cat "$work/http.log")"
    else
        hcrun() { out=$(env "$@" "$hc" "${hcpath[@]}" 2>&1); rc=$?; }
        hcexpect() {
            local want=$1 what=$2
            if [ "$rc" = "$want" ]; then pass "health check: $what -> exit $rc: $out"
            else fail "health check: $what -> exit $rc, want $want: $out"; fi
        }
        hcpath=()
        hcrun K2P_HEALTHCHECK_ADDR="127.0.0.1:$port"
        hcexpect 0 "/healthz answering 200"
        hcpath=(/readyz)
        hcrun K2P_HEALTHCHECK_ADDR="127.0.0.1:$port"
        hcexpect 1 "/readyz answering 404"
        hcpath=()
        printf 'bash\0-c\0x\0' >"$work/proc/1/cmdline"
        printf '/usr/local/bin/kinesis2pg\0load\0--follow\0--metrics-addr\0%s\0' "0.0.0.0:$port" \
            >"$work/proc/2/cmdline"
        hcrun K2P_HEALTHCHECK_PROC="$work/proc"
        hcexpect 0 "address from '--metrics-addr 0.0.0.0:PORT' of the running kinesis2pg"
        printf 'kinesis2pg\0load\0--metrics-addr=[::]:%s\0' "$port" >"$work/proc/2/cmdline"
        hcrun K2P_HEALTHCHECK_PROC="$work/proc"
        hcexpect 0 "address from '--metrics-addr=[::]:PORT'"
        printf 'kinesis2pg\0load\0--stream\0s\0' >"$work/proc/2/cmdline"
        hcrun K2P_HEALTHCHECK_PROC="$work/proc"
        hcexpect 0 "kinesis2pg without --metrics-addr"
        hcrun K2P_HEALTHCHECK_PROC="$work/proc" K2P_HEALTHCHECK_REQUIRED=1
        hcexpect 1 "kinesis2pg without --metrics-addr, K2P_HEALTHCHECK_REQUIRED=1"
        rm "$work/proc/2/cmdline"
        hcrun K2P_HEALTHCHECK_PROC="$work/proc"
        hcexpect 1 "no kinesis2pg process"
        kill "$http_pid" 2>/dev/null
        wait "$http_pid" 2>/dev/null
        http_pid=
        hcrun K2P_HEALTHCHECK_ADDR="127.0.0.1:$port"
        hcexpect 1 "server gone (connection refused)"
    fi
fi

# ------------------------------------------------------------------------------------------
section "Dockerfile, compose.yaml and Kubernetes manifests"
ypy=
for c in python3 /usr/bin/python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import yaml' 2>/dev/null; then ypy=$c; break; fi
done
if [ -z "$ypy" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing python3-yaml (Debian) for the YAML checks"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends python3-yaml >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 &&
          apt-get install -y -qq --no-install-recommends python3-yaml >/dev/null 2>&1; }
    /usr/bin/python3 -c 'import yaml' 2>/dev/null && ypy=/usr/bin/python3
fi
if [ -z "$ypy" ]; then
    skip "Dockerfile/YAML checks: no python3 with PyYAML (install python3-yaml)"
else
    "$ypy" - "$src" "$bin" "$version" >"$work/yaml.log" 2>&1 <<'PY'
import os, re, shlex, subprocess, sys
import yaml

src, bindir, version = sys.argv[1:4]
docker = os.path.join(src, "docker")


def ok(msg):
    print("ok   " + msg)


def fail(msg):
    print("FAIL " + msg)


def check(cond, msg):
    (ok if cond else fail)(msg)
    return cond


def flags_of_help(prog, *cmd):
    out = subprocess.run([os.path.join(bindir, prog), *cmd, "--help"], capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin"}).stdout
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", out))


def flags_in(args):
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


load_flags = flags_of_help("kinesis2pg", "load")
produce_flags = flags_of_help("kinesis2pg-produce")
check("--follow" in load_flags and "--metrics-addr" in load_flags,
      "kinesis2pg load --help lists %d flags, --follow and --metrics-addr among them" % len(load_flags))

# ---- Dockerfile ----------------------------------------------------------------------------
text = open(os.path.join(docker, "Dockerfile")).read()
lines, cur = [], ""
for raw in text.splitlines():
    s = raw.strip()
    if not cur and (not s or s.startswith("#")):
        continue
    if cur and s.startswith("#"):
        continue
    if s.endswith("\\"):
        cur += s[:-1] + " "
        continue
    lines.append(cur + s)
    cur = ""
instrs = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in lines]

global_args, stages = {}, []
for op, rest in instrs:
    if op == "ARG" and not stages:
        k, _, v = rest.partition("=")
        global_args[k.strip()] = v.strip()
    elif op == "FROM":
        parts = rest.split()
        image = re.sub(r"\$\{(\w+)\}", lambda m: global_args.get(m.group(1), ""), parts[0])
        name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
        stages.append({"image": image, "name": name, "instrs": []})
    elif stages:
        stages[-1]["instrs"].append((op, rest))
check([s["image"] for s in stages] == ["debian:12", "debian:12-slim"],
      "Dockerfile stages: %s" % ", ".join("%s (%s)" % (s["name"], s["image"]) for s in stages))
builder, runtime = (stages + [{"instrs": []}, {"instrs": []}])[:2]


def stage_text(st):
    return "\n".join("%s %s" % i for i in st["instrs"])


body = "\n".join(l for l in text.splitlines() if not l.startswith("# syntax="))
refs = sorted(set(re.findall(r"docker/[\w.-]+(?:/[\w.-]+)*", body)))
missing = [r for r in refs if not os.path.exists(os.path.join(src, r))]
check(refs and not missing, "Dockerfile references %s; missing: %s" % (", ".join(refs), missing or "none"))
for op, rest in instrs:
    if op in ("COPY", "ADD") and "--from=" not in rest:
        toks = [t for t in shlex.split(rest) if not t.startswith("--")]
        for s in toks[:-1]:
            check(os.path.exists(os.path.join(src, s.rstrip("/") or ".")),
                  "Dockerfile %s source %s exists" % (op, s))
    for m in re.finditer(r"--mount=\S*source=([^,\s]+)", rest):
        check(os.path.exists(os.path.join(src, m.group(1))),
              "Dockerfile mount source %s exists" % m.group(1))
bt, rt = stage_text(builder), stage_text(runtime)
check("docker/build-deps.sh" in bt and "docker/build.sh" in bt,
      "builder stage runs docker/build-deps.sh and docker/build.sh")
check("runtime-deps.sh" in rt and "smoke.sh" in rt and "build-deps.sh" not in rt,
      "runtime stage runs runtime-deps.sh and smoke.sh, not build-deps.sh")
rt_ops = {}
for op, rest in runtime["instrs"]:
    rt_ops.setdefault(op, []).append(rest)
check(rt_ops.get("USER", [""])[-1].split(":")[0] == "10001", "runtime USER is 10001")
check(rt_ops.get("ENTRYPOINT", [""])[-1] == '["kinesis2pg"]', 'ENTRYPOINT ["kinesis2pg"]')
check(rt_ops.get("CMD", [""])[-1] == '["--help"]', 'CMD ["--help"]')
hcheck = rt_ops.get("HEALTHCHECK", [""])[-1]
check("kinesis2pg-healthcheck" in hcheck and
      "kinesis2pg-healthcheck" in open(os.path.join(docker, "build.sh")).read(),
      "HEALTHCHECK runs kinesis2pg-healthcheck, which docker/build.sh installs")
check("9108" in " ".join(rt_ops.get("EXPOSE", [])), "EXPOSE 9108")
labels = " ".join(rt_ops.get("LABEL", []))
for key in ("title", "description", "source", "licenses", "version"):
    check("org.opencontainers.image.%s=" % key in labels, "label org.opencontainers.image.%s" % key)
vers = [r.split("=", 1)[1] for r in rt_ops.get("ARG", []) if r.startswith("VERSION=")]
check(vers == [version], "ARG VERSION=%s matches project(VERSION %s) in CMakeLists.txt" % (vers, version))

# .dockerignore next to the Dockerfile: keeps what the build needs, drops build output.
def ignore_rx(p):
    rx, i = "", 0
    while i < len(p):
        if p.startswith("**/", i):
            rx += "(?:.*/)?"; i += 3
        elif p.startswith("**", i):
            rx += ".*"; i += 2
        elif p[i] == "*":
            rx += "[^/]*"; i += 1
        elif p[i] == "?":
            rx += "[^/]"; i += 1
        else:
            rx += re.escape(p[i]); i += 1
    return re.compile(rx + r"(?:/.*)?$")


pats = []
for l in open(os.path.join(docker, "Dockerfile.dockerignore")):
    l = l.strip()
    if l and not l.startswith("#"):
        neg = l.startswith("!")
        pats.append((neg, ignore_rx(l.lstrip("!").strip("/"))))


def ignored(path):
    r = False
    for neg, rx in pats:
        if rx.match(path):
            r = not neg
    return r


needed = ["CMakeLists.txt", "src/main.c", "include/kinesis2pg/config.h", "tests/CMakeLists.txt",
          "tests/unit", "tests/mock_kinesis/CMakeLists.txt", "docs/configuration.md"] + \
         ["docker/" + f for f in os.listdir(docker)]
if os.path.exists(os.path.join(src, "bench/CMakeLists.txt")):
    needed.append("bench/CMakeLists.txt")
cut = [p for p in needed if ignored(p)]
check(not cut, "Dockerfile.dockerignore keeps what the build needs (cut: %s)" % (cut or "none"))
check(all(ignored(p) for p in ["build/CMakeCache.txt", "build-asan/x", ".git/HEAD",
                                "tests/emulators/node_modules/kinesalite/cli.js"]),
      "Dockerfile.dockerignore drops build directories, .git and node_modules")

# ---- every YAML file under docker/ ------------------------------------------------------------
docs = {}
for d, _, files in os.walk(docker):
    for f in sorted(files):
        if f.endswith((".yaml", ".yml")):
            p = os.path.join(d, f)
            rel = os.path.relpath(p, src)
            try:
                docs[rel] = [x for x in yaml.safe_load_all(open(p)) if x is not None]
                ok("%s parses (%d document%s)" % (rel, len(docs[rel]), "" if len(docs[rel]) == 1 else "s"))
            except yaml.YAMLError as e:
                fail("%s: %s" % (rel, e))

# ---- compose.yaml -------------------------------------------------------------------------------
compose = (docs.get("docker/compose.yaml") or [{}])[0]
svcs = compose.get("services", {})
check({"postgres", "kinesis", "loader", "producer"} <= set(svcs),
      "compose services: %s" % ", ".join(sorted(svcs)))
check(str(svcs.get("postgres", {}).get("image", "")).startswith("postgres:15"), "compose: PostgreSQL 15")
emu_pkg = open(os.path.join(src, "tests/emulators/package.json")).read()
kver = re.search(r'"kinesalite"\s*:\s*"([^"]+)"', emu_pkg)
kcmd = " ".join(map(str, svcs.get("kinesis", {}).get("command", [])))
check(kver and ("kinesalite@" + kver.group(1)) in kcmd,
      "compose: kinesalite pinned as in tests/emulators (%s)" % (kver.group(1) if kver else "?"))
valid_cond = {"service_started", "service_healthy", "service_completed_successfully"}
for name, s in svcs.items():
    b = s.get("build")
    if b:
        ctx = os.path.normpath(os.path.join(docker, b.get("context", ".")))
        df = os.path.join(ctx, b.get("dockerfile", "Dockerfile"))
        check(os.path.exists(os.path.join(ctx, "CMakeLists.txt")) and os.path.samefile(df, os.path.join(docker, "Dockerfile")),
              "compose %s: builds docker/Dockerfile with the repository root as context" % name)
    for dep, spec in (s.get("depends_on") or {}).items():
        cond = spec.get("condition") if isinstance(spec, dict) else None
        check(dep in svcs and cond in valid_cond, "compose %s depends on %s (%s)" % (name, dep, cond))
        if cond == "service_healthy":
            check("healthcheck" in svcs.get(dep, {}) or "build" in svcs.get(dep, {}),
                  "compose %s has a health check" % dep)
loader = svcs.get("loader", {})
lcmd = [str(a) for a in loader.get("command", [])]
bad = [f for f in flags_in(lcmd) if f not in load_flags]
check(lcmd[:1] == ["load"] and "--follow" in lcmd and not bad,
      "compose loader: %s (unknown flags: %s)" % (" ".join(lcmd), bad or "none"))
m = re.search(r":(\d+)$", lcmd[lcmd.index("--metrics-addr") + 1]) if "--metrics-addr" in lcmd else None
check(m and any(str(p).endswith(":" + m.group(1)) for p in loader.get("ports", [])),
      "compose loader publishes its --metrics-addr port")
check("healthcheck" in loader, "compose loader has a health check")
for name in ("stream", "producer"):
    s = svcs.get(name)
    if not s:
        continue
    cmd = s.get("command", [])
    words = shlex.split(" ".join(map(str, cmd)).replace("$$", "$")) if isinstance(cmd, list) else shlex.split(cmd)
    ep = s.get("entrypoint", [])
    words = [str(w) for w in (ep if isinstance(ep, list) else [ep])] + words
    pf = [w for w in flags_in(words) if w not in ("--yes",)]
    bad = [f for f in pf if f not in produce_flags]
    check(any("kinesis2pg-produce" in w for w in words) and pf and not bad,
          "compose %s runs kinesis2pg-produce with known flags (unknown: %s)" % (name, bad or "none"))

# ---- Kubernetes -------------------------------------------------------------------------------
k8s = {rel: d for rel, d in docs.items() if rel.startswith("docker/k8s/")}
kinds = {}
for rel, ds in k8s.items():
    for d in ds:
        kinds.setdefault(d.get("kind"), []).append((rel, d))
want = {"ServiceAccount", "ConfigMap", "Deployment", "Job", "CronJob", "Kustomization"}
check(want <= set(kinds), "k8s kinds: %s" % ", ".join(sorted(map(str, kinds))))
kust = (kinds.get("Kustomization") or [(None, {})])[0][1]
res = kust.get("resources", [])
missing = [r for r in res if not os.path.exists(os.path.join(docker, "k8s", r))]
check(res and not missing, "kustomization resources exist (%s)" % ", ".join(res))
rkinds = []
for r in res:
    for d in docs.get("docker/k8s/" + r, []):
        rkinds.append(d.get("kind"))
check({"ServiceAccount", "ConfigMap"} <= set(rkinds), "kustomization has the ServiceAccount and ConfigMap")
check(sum(k in ("Deployment", "CronJob", "Job") for k in rkinds) == 1,
      "kustomization runs exactly one loader (%s)" % [k for k in rkinds if k in ("Deployment", "CronJob", "Job")])
kimg = [i.get("name") for i in kust.get("images", [])]

sa = (kinds.get("ServiceAccount") or [(None, {})])[0][1]
sa_name = sa.get("metadata", {}).get("name")
check("eks.amazonaws.com/role-arn" in (sa.get("metadata", {}).get("annotations") or {}),
      "ServiceAccount %s is annotated for IRSA" % sa_name)
cm = (kinds.get("ConfigMap") or [(None, {})])[0][1]
cm_name = cm.get("metadata", {}).get("name")
conf_doc = open(os.path.join(src, "docs/configuration.md")).read()
for k, v in (cm.get("data") or {}).items():
    check(isinstance(v, str) and ("`%s`" % k in conf_doc or re.match(r"^(PG[A-Z_]+|AWS_[A-Z_]+)$", k)),
          "ConfigMap %s=%s: a documented setting (docs/configuration.md, or a libpq/AWS variable)" % (k, v))
check("SOURCES__KINESIS__STREAM_NAME" in (cm.get("data") or {}), "ConfigMap names the stream")


def mem(q):
    m = re.match(r"^(\d+)(Ki|Mi|Gi)?$", str(q))
    return int(m.group(1)) * {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, None: 1}[m.group(2)] if m else -1


for kind in ("Deployment", "Job", "CronJob"):
    for rel, d in kinds.get(kind, []):
        spec = d["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else d["spec"]
        pod = spec["template"]["spec"]
        c = pod["containers"][0]
        tag = "%s %s" % (kind, rel)
        check(pod.get("serviceAccountName") == sa_name, "%s: serviceAccountName %s" % (tag, sa_name))
        check(pod.get("terminationGracePeriodSeconds", 30) >= 20,
              "%s: terminationGracePeriodSeconds %s covers the ~10 s SIGTERM drain" % (tag, pod.get("terminationGracePeriodSeconds", 30)))
        psc, csc = pod.get("securityContext") or {}, c.get("securityContext") or {}
        check((psc.get("runAsNonRoot") or csc.get("runAsNonRoot")) is True and
              psc.get("runAsUser", csc.get("runAsUser", 10001)) == 10001,
              "%s: runAsNonRoot, uid 10001 as in the image" % tag)
        check(csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False and
              "ALL" in ((csc.get("capabilities") or {}).get("drop") or []),
              "%s: read-only root, no privilege escalation, all capabilities dropped" % tag)
        env = {e["name"]: e for e in c.get("env", [])}
        check("secretKeyRef" in (env.get("DATABASE_URL", {}).get("valueFrom") or {}),
              "%s: DATABASE_URL from a Secret" % tag)
        check(any((ef.get("configMapRef") or {}).get("name") == cm_name for ef in c.get("envFrom", [])),
              "%s: settings from ConfigMap %s" % (tag, cm_name))
        r = c.get("resources") or {}
        rq, lm = r.get("requests") or {}, r.get("limits") or {}
        check({"cpu", "memory"} <= set(rq) and "memory" in lm and mem(lm["memory"]) >= mem(rq["memory"]) > 0,
              "%s: requests %s, limits %s" % (tag, rq, lm))
        args = [str(a) for a in c.get("args", [])]
        bad = [f for f in flags_in(args) if f not in load_flags]
        check(args[:1] == ["load"] and not bad,
              "%s: kinesis2pg %s (unknown flags: %s)" % (tag, " ".join(args), bad or "none"))
        check(str(c.get("image", "")).split(":")[0] in kimg, "%s: image %s is the kustomization's" % (tag, c.get("image")))
        if kind in ("Job", "CronJob"):
            check(pod.get("restartPolicy") in ("Never", "OnFailure"), "%s: restartPolicy %s" % (tag, pod.get("restartPolicy")))
            check("--follow" not in args, "%s: a batch load (no --follow)" % tag)
        if kind == "CronJob":
            check(d["spec"].get("concurrencyPolicy") == "Forbid", "%s: concurrencyPolicy Forbid" % tag)
        if kind == "Deployment":
            check(d["spec"].get("replicas") == 1 and (d["spec"].get("strategy") or {}).get("type") == "Recreate",
                  "%s: one replica, strategy Recreate" % tag)
            check("--follow" in args and "--metrics-addr" in args, "%s: --follow --metrics-addr" % tag)
            mport = int(args[args.index("--metrics-addr") + 1].rsplit(":", 1)[1]) if "--metrics-addr" in args else -1
            ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
            check(mport in ports.values(), "%s: containerPort %d is the --metrics-addr port" % (tag, mport))

            def probe(name, path):
                h = (c.get(name) or {}).get("httpGet") or {}
                port = ports.get(h.get("port"), h.get("port"))
                check(h.get("path") == path and port == mport, "%s: %s GET %s on %s" % (tag, name, path, port))

            probe("livenessProbe", "/healthz")
            probe("readinessProbe", "/readyz")
            ann = spec["template"].get("metadata", {}).get("annotations") or {}
            check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(mport),
                  "%s: Prometheus scrape annotations on port %d" % (tag, mport))
PY
    while IFS= read -r line; do
        case "$line" in
            "ok   "*) pass "${line#ok   }" ;;
            "FAIL "*) fail "${line#FAIL }" ;;
            *) echo "$line" ;;
        esac
    done <"$work/yaml.log"
    grep -q '^ok   ' "$work/yaml.log" || fail "the YAML checks ran no check"
fi

if command -v kubectl >/dev/null 2>&1; then
    if kubectl kustomize docker/k8s >"$work/kustomize.out" 2>&1; then
        pass "kubectl kustomize docker/k8s renders: $(grep '^kind:' "$work/kustomize.out" | cut -d' ' -f2 | tr '\n' ' ')"
    else
        fail "kubectl kustomize docker/k8s: $(head -5 "$work/kustomize.out")"
    fi
else
    skip "kubectl kustomize: kubectl not installed"
fi

echo
echo "took $(($(date +%s) - t_start)) s"
echo "test_packaging: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
