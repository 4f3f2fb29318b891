#!/usr/bin/env bash
# Builds kube-apiserver and etcd from Go modules (through the Go module proxy) and caches them
# by version outside the repo. Prints the directory holding both binaries as the last stdout line.
# `build-binaries.sh tekton` builds Tekton's pipelines controller instead (cmd/controller), and
# prints the path of that binary. `build-binaries.sh tools` builds kubectl and jq (gojq) for tests
# that run shell steps, and prints their directory. `build-binaries.sh kcp` builds kcp (cmd/kcp) from
# the wrapper module committed in envtest/kcp/ (go.mod and go.sum: every module is checked against
# that go.sum), and prints the path of the binary; `build-binaries.sh kcp-module` regenerates that
# wrapper from kcp's own go.mod (after changing KCP_VERSION). `build-binaries.sh kcp-shards` also builds
# kcp-front-proxy and cache-server (cmd/kcp-front-proxy, cmd/cache-server) from the same wrapper module
# into kcp's directory, for several shards behind one front proxy, and prints that directory.
#
# Honours KUBEBUILDER_ASSETS: when it names a directory with both binaries, nothing is built.
# Why a wrapper module: k8s.io/kubernetes requires its staging modules at v0.0.0 with
# `replace => ./staging/...`, so `go install k8s.io/kubernetes/cmd/kube-apiserver@vX` refuses.
set -euo pipefail

K8S_VERSION="${ISC_K8S_VERSION:-v1.35.4}"
ETCD_VERSION="${ISC_ETCD_VERSION:-v3.6.6}"
TEKTON_VERSION="${ISC_TEKTON_VERSION:-v1.15.0}"
GOJQ_VERSION="${ISC_GOJQ_VERSION:-v0.12.17}"
TKN_VERSION="${ISC_TKN_VERSION:-v0.46.0}"
KCP_VERSION="${ISC_KCP_VERSION:-v0.30.0}"
# kcp's go.mod replaces these with ./staging directories of its own repository; the wrapper uses
# their published versions (kcp's require lines name pseudo-versions the proxy does not serve).
KCP_STAGING_VERSIONS=(
  "github.com/kcp-dev/apimachinery/v2 v2.30.1"
  "github.com/kcp-dev/client-go v0.30.1"
  "github.com/kcp-dev/sdk v0.30.0"
  "github.com/kcp-dev/code-generator/v3 v3.0.0-20250707080944-4094fb87e20f"
)
KCP_MODULE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kcp"
TARGET="${1:-kube}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/internal-service-controller"

if [[ "$TARGET" == kube && -n "${KUBEBUILDER_ASSETS:-}" && -x "$KUBEBUILDER_ASSETS/kube-apiserver" && -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

BIN_DIR="$CACHE_ROOT/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
TEKTON_BIN="$CACHE_ROOT/bin/tekton-$TEKTON_VERSION/controller"
TOOLS_DIR="$CACHE_ROOT/bin/tools-k8s-$K8S_VERSION-gojq-$GOJQ_VERSION-tkn-$TKN_VERSION"
KCP_DIR="$CACHE_ROOT/bin/kcp-$KCP_VERSION"
KCP_BIN="$KCP_DIR/kcp"
KCP_SHARD_CMDS=(kcp-front-proxy cache-server)
if [[ "$TARGET" == kcp && -x "$KCP_BIN" ]]; then
  echo "$KCP_BIN"
  exit 0
fi
if [[ "$TARGET" == kcp-shards && -x "$KCP_BIN" && -x "$KCP_DIR/kcp-front-proxy" && -x "$KCP_DIR/cache-server" ]]; then
  echo "$KCP_DIR"
  exit 0
fi
if [[ "$TARGET" == tools && -x "$TOOLS_DIR/kubectl" && -x "$TOOLS_DIR/jq" && -x "$TOOLS_DIR/tkn" ]]; then
  echo "$TOOLS_DIR"
  exit 0
fi
if [[ "$TARGET" == tekton && -x "$TEKTON_BIN" ]]; then
  echo "$TEKTON_BIN"
  exit 0
fi
if [[ "$TARGET" == kube && -x "$BIN_DIR/kube-apiserver" && -x "$BIN_DIR/etcd" ]]; then
  echo "$BIN_DIR"
  exit 0
fi

command -v go >/dev/null || { echo "build-binaries: Go is required to build kube-apiserver and etcd (or set KUBEBUILDER_ASSETS to a directory holding both)" >&2; exit 1; }
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
mkdir -p "$CACHE_ROOT"
WORK="$(mktemp -d "$CACHE_ROOT/build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# Progress: `go build -v` names each package as it compiles; print a line every 200.
# The full output is kept in a log that is shown when the build fails.
progress() {
  local what="$1" noun="${2:-packages compiled}" log="$WORK/$1.log" n=0
  while IFS= read -r line; do
    echo "$line" >>"$log"
    n=$((n + 1))
    if ((n % 200 == 0)); then echo "build-binaries: $what: $n $noun" >&2; fi
  done
  echo "build-binaries: $what: $n $noun" >&2
}
failed() {
  echo "build-binaries: $1 build failed; last lines of the build log:" >&2
  tail -n 40 "$WORK/$1.log" >&2 || true
  exit 1
}

build_etcd() {
  [[ -x "$BIN_DIR/etcd" ]] && return 0
  mkdir -p "$BIN_DIR"
  local started=$SECONDS dir="$WORK/etcd"
  echo "build-binaries: building etcd $ETCD_VERSION (first run only; takes a few minutes)" >&2
  mkdir -p "$dir" && cd "$dir"
  go mod init isc-etcd-build >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" 2>&1 | progress etcd-download "modules resolved" || failed etcd-download
  go build -v -trimpath -o "$dir/etcd" go.etcd.io/etcd/server/v3 2>&1 | progress etcd || failed etcd
  mv "$dir/etcd" "$BIN_DIR/etcd"
  echo "build-binaries: etcd built in $((SECONDS - started))s" >&2
}

# The wrapper module for k8s.io/kubernetes binaries, in $WORK/kube.
kube_module() {
  local dir="$WORK/kube" staging_version="v0.${K8S_VERSION#v1.}" upstream_mod
  [[ -f "$dir/go.mod" ]] && { cd "$dir"; return 0; }
  mkdir -p "$dir" && cd "$dir"
  upstream_mod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  {
    echo "module isc-kube-build"
    echo
    grep -E '^(go|godebug) ' "$upstream_mod"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    grep -E '^\s+k8s\.io/[a-z0-9-]+ => \./staging/' "$upstream_mod" |
      awk -v v="$staging_version" '{ print "replace " $1 " => " $1 " " v }'
  } >go.mod
}

# build_kube <command> <destination>: builds k8s.io/kubernetes/cmd/<command> with the version set.
build_kube() {
  local cmd="$1" dest="$2" started=$SECONDS minor="${K8S_VERSION#v1.}"
  minor="${minor%%.*}"
  [[ -x "$dest" ]] && return 0
  echo "build-binaries: building $cmd $K8S_VERSION (first run only; takes several minutes)" >&2
  kube_module
  go get "k8s.io/kubernetes/cmd/$cmd@$K8S_VERSION" 2>&1 | progress "$cmd-download" "modules resolved" || failed "$cmd-download"
  local pkg=k8s.io/component-base/version
  local ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  go build -v -trimpath -ldflags "$ldflags" -o "$WORK/$cmd" "k8s.io/kubernetes/cmd/$cmd" 2>&1 |
    progress "$cmd" || failed "$cmd"
  mkdir -p "$(dirname "$dest")"
  mv "$WORK/$cmd" "$dest"
  echo "build-binaries: $cmd built in $((SECONDS - started))s" >&2
}

build_gojq() {
  local dir="$WORK/gojq"
  [[ -x "$TOOLS_DIR/jq" ]] && return 0
  echo "build-binaries: building gojq $GOJQ_VERSION as jq" >&2
  mkdir -p "$dir" "$TOOLS_DIR" && cd "$dir"
  go mod init isc-gojq-build >/dev/null 2>&1
  go get "github.com/itchyny/gojq/cmd/gojq@$GOJQ_VERSION" 2>&1 | progress gojq-download "modules resolved" || failed gojq-download
  go build -v -trimpath -ldflags "-s -w" -o "$TOOLS_DIR/jq" github.com/itchyny/gojq/cmd/gojq 2>&1 | progress gojq || failed gojq
}

# Tekton's go.mod has no replace directives: a plain wrapper module builds it.
build_tekton() {
  local started=$SECONDS dir="$WORK/tekton"
  echo "build-binaries: building Tekton pipelines controller $TEKTON_VERSION (first run only; takes several minutes)" >&2
  mkdir -p "$dir" "$(dirname "$TEKTON_BIN")" && cd "$dir"
  go mod init isc-tekton-build >/dev/null 2>&1
  go get "github.com/tektoncd/pipeline/cmd/controller@$TEKTON_VERSION" 2>&1 |
    progress tekton-download "modules resolved" || failed tekton-download
  go build -v -trimpath -ldflags "-s -w" -o "$dir/controller" github.com/tektoncd/pipeline/cmd/controller 2>&1 |
    progress tekton || failed tekton
  mv "$dir/controller" "$TEKTON_BIN"
  echo "build-binaries: Tekton controller built in $((SECONDS - started))s" >&2
}

# Tekton's CLI: its go.mod has replace directives, which a wrapper module must repeat.
build_tkn() {
  local dir="$WORK/tkn" started=$SECONDS upstream_mod
  [[ -x "$TOOLS_DIR/tkn" ]] && return 0
  echo "build-binaries: building tkn $TKN_VERSION (first run only; takes a few minutes)" >&2
  mkdir -p "$dir" "$TOOLS_DIR" && cd "$dir"
  upstream_mod="$(go mod download -json "github.com/tektoncd/cli@$TKN_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  {
    echo "module isc-tkn-build"
    grep -E '^go ' "$upstream_mod"
    echo "require github.com/tektoncd/cli $TKN_VERSION"
    grep -E '^replace ' "$upstream_mod"
  } >go.mod
  go get "github.com/tektoncd/cli/cmd/tkn@$TKN_VERSION" 2>&1 | progress tkn-download "modules resolved" || failed tkn-download
  go build -v -trimpath -ldflags "-s -w" -o "$TOOLS_DIR/tkn" github.com/tektoncd/cli/cmd/tkn 2>&1 | progress tkn || failed tkn
  echo "build-binaries: tkn built in $((SECONDS - started))s" >&2
}

# kcp-dev modules are not in the checksum database (and the proxy refuses @v/list and @latest for
# them: every version is named exactly). The committed go.sum is what verifies them.
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/kcp-dev"

# Writes the wrapper module for kcp into directory $1: kcp's go line, its replace lines that name
# modules (kcp's fork of the Kubernetes staging modules), published versions for its ./staging
# replaces, and the requirements and go.sum that `go get` settles on, starting from kcp's go.sum.
kcp_module() {
  local dir="$1" upstream_mod upstream_dir local_replaces path found entry
  mkdir -p "$dir" && cd "$dir"
  rm -f go.mod go.sum
  upstream_mod="$(go mod download -json "github.com/kcp-dev/kcp@$KCP_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  upstream_dir="$(go mod download -json "github.com/kcp-dev/kcp@$KCP_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  [[ -f "$upstream_mod" && -f "$upstream_dir/go.sum" ]] || { echo "build-binaries: could not download github.com/kcp-dev/kcp@$KCP_VERSION" >&2; exit 1; }
  local_replaces="$(grep -E '^\s+[^ ]+ => \./' "$upstream_mod" | awk '{ print $1 }')"
  for path in $local_replaces; do
    found=
    for entry in "${KCP_STAGING_VERSIONS[@]}"; do [[ "${entry%% *}" == "$path" ]] && found=1; done
    [[ -n "$found" ]] || { echo "build-binaries: kcp $KCP_VERSION replaces $path with a local directory; add its published version to KCP_STAGING_VERSIONS" >&2; exit 1; }
  done
  {
    echo "// Generated by envtest/build-binaries.sh kcp-module: the wrapper module that builds kcp $KCP_VERSION."
    echo "module isc-kcp-build"
    echo
    grep -E '^go ' "$upstream_mod"
    echo
    echo "require github.com/kcp-dev/kcp $KCP_VERSION"
    echo
    echo "replace ("
    grep -E '^\s+[^ ]+ => [^.][^ ]* v[^ ]+$' "$upstream_mod" | sed -E 's/^\s+/\t/'
    for entry in "${KCP_STAGING_VERSIONS[@]}"; do echo "	${entry%% *} => $entry"; done
    echo ")"
  } >go.mod
  cp "$upstream_dir/go.sum" go.sum
  chmod u+w go.sum
  go get "github.com/kcp-dev/kcp/cmd/kcp@$KCP_VERSION" 2>&1 | progress kcp-download "modules resolved" || failed kcp-download
}

# Sets up the wrapper module in $WORK/kcp (once) and KCP_LDFLAGS, the version stamped into every kcp binary.
KCP_LDFLAGS=
kcp_prepare() {
  local dir="$WORK/kcp" minor commit pkg kube_version
  [[ -n "$KCP_LDFLAGS" ]] && { cd "$dir"; return 0; }
  if grep -qE "^(require )?\s*github.com/kcp-dev/kcp $KCP_VERSION(\s|\$)" "$KCP_MODULE_DIR/go.mod" 2>/dev/null; then
    mkdir -p "$dir" && cp "$KCP_MODULE_DIR/go.mod" "$KCP_MODULE_DIR/go.sum" "$dir/" && cd "$dir"
  else
    echo "build-binaries: envtest/kcp/go.mod is not for kcp $KCP_VERSION; generating a wrapper (its go.sum is not checked in)" >&2
    kcp_module "$dir"
  fi
  # -mod=readonly: the build uses exactly the committed requirements, and fails on any module
  # whose checksum is not in go.sum (rather than adding it).
  export GOFLAGS=-mod=readonly
  kube_version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
  minor="${kube_version#v1.}"
  minor="${minor%%.*}"
  commit="$(sed -n 's/.*"Hash":"\([0-9a-f]*\)".*/\1/p' "$(go mod download -json "github.com/kcp-dev/kcp@$KCP_VERSION" | sed -n 's/.*"Info": "\(.*\)".*/\1/p')" | cut -c1-8)"
  KCP_LDFLAGS="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    KCP_LDFLAGS+=" -X $pkg.gitVersion=$kube_version+kcp-$KCP_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    KCP_LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit=${commit:-unknown}"
  done
}

# build_kcp_cmd <command>: builds github.com/kcp-dev/kcp/cmd/<command> into $KCP_DIR (kept when there).
build_kcp_cmd() {
  local cmd="$1" started=$SECONDS
  [[ -x "$KCP_DIR/$cmd" ]] && return 0
  if [[ "$cmd" == kcp ]]; then
    echo "build-binaries: building kcp $KCP_VERSION (first run only; takes several minutes)" >&2
  else
    echo "build-binaries: building $cmd of kcp $KCP_VERSION (first run only; quick once kcp is built)" >&2
  fi
  kcp_prepare
  go list -deps "github.com/kcp-dev/kcp/cmd/$cmd" 2>&1 | progress "$cmd-download" "packages resolved" || failed "$cmd-download"
  go build -v -trimpath -ldflags "$KCP_LDFLAGS" -o "$WORK/kcp/$cmd" "github.com/kcp-dev/kcp/cmd/$cmd" 2>&1 |
    progress "$cmd" || failed "$cmd"
  mkdir -p "$KCP_DIR"
  mv "$WORK/kcp/$cmd" "$KCP_DIR/$cmd"
  echo "build-binaries: $cmd built in $((SECONDS - started))s" >&2
}

case "$TARGET" in
  kube)
    build_etcd
    build_kube kube-apiserver "$BIN_DIR/kube-apiserver"
    echo "$BIN_DIR"
    ;;
  tools)
    build_kube kubectl "$TOOLS_DIR/kubectl"
    build_gojq
    build_tkn
    echo "$TOOLS_DIR"
    ;;
  tekton)
    build_tekton
    echo "$TEKTON_BIN"
    ;;
  kcp)
    build_kcp_cmd kcp
    echo "$KCP_BIN"
    ;;
  kcp-shards)
    for cmd in kcp "${KCP_SHARD_CMDS[@]}"; do build_kcp_cmd "$cmd"; done
    echo "$KCP_DIR"
    ;;
  kcp-module)
    kcp_module "$WORK/kcp-module"
    mkdir -p "$KCP_MODULE_DIR"
    cp go.mod go.sum "$KCP_MODULE_DIR/"
    echo "$KCP_MODULE_DIR"
    ;;
  *) echo "usage: build-binaries.sh [kube|tekton|tools|kcp|kcp-shards|kcp-module]" >&2; exit 2 ;;
esac
